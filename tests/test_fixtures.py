"""The vendored reference data (tests/fixtures/README.md): every file is there and unchanged.

The tests that compare against these files are only meaningful while the files are the reference values
they were given as; regenerating one with this project's own code would make those tests pass trivially.
"""

import hashlib

import pytest

from tadtest import FIXTURES, require_fixture

SHA256 = {
    "leaderboard_aup.json": "5034fca03ccdd4ca6611aefb2dd7d427bdbe4bdf118dbe40be5a3f438a1745d0",
    "llada-tiny/config.json": "3be8d25cc4771d6b5ce388fe04051599d8372a5565c50f28670256f47f37794b",
    "llada-tiny/model.safetensors": "02f875b58eec00eedcdc1518321e6c404d2bce6bc031756c092a29fbdeb941ff",
    "llada-tiny/reference_logits.safetensors": "483a4a3173d798949209ed8ea0a841684a5551a6e43619a403502909ce126e76",
    "llada-tiny/state_dict_shapes.json": "26e42fd0e0e89af32d98d52346842ff5f675120d4a97648fa5ec5feaae7d5a8c",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_vendored_fixture_is_present_and_unchanged(name):
    path = require_fixture(FIXTURES / name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[name], f"{path} differs from the reference copy"


def test_missing_fixture_fails_instead_of_skipping(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="test fixture missing"):
        require_fixture(tmp_path / "absent.json")


def test_every_vendored_file_is_listed():
    found = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file()}
    assert found - {"README.md"} == set(SHA256)
