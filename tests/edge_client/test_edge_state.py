"""ClientState: the one reader and writer of a client's state.json."""
import json

import pytest

from edge_client.state import STATE_FILE, ClientState


def _state(**kw) -> ClientState:
    base = dict(client_id="edge-1", partition_id=1, num_partitions=4, alpha=None, seed=7, latent_dim=16)
    return ClientState(**{**base, **kw})


def test_round_trip_and_replace(tmp_path):
    s = _state(bits=8, scale=[0.5], config={"latent_dim": 16}, image_shape=[1, 8, 8])
    s.save(tmp_path)
    assert ClientState.load(tmp_path) == s
    assert json.loads((tmp_path / STATE_FILE).read_text())["scale"] == [0.5]
    again = ClientState.load(tmp_path).replace(bits=4, scale=[1.5])
    assert (again.bits, again.scale, again.client_id) == (4, [1.5], "edge-1")


def test_errors_name_the_file_key_or_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="state.json not found; run train_and_upload first"):
        ClientState.load(tmp_path)
    (tmp_path / STATE_FILE).write_text(json.dumps({**_state().__dict__, "tokn": "x"}))
    with pytest.raises(ValueError, match="unknown key 'tokn'"):
        ClientState.load(tmp_path)
    with pytest.raises(ValueError, match=r"partition_id: got 2, but .* was trained with 1"):
        _state().check_matches(tmp_path, client_id="edge-1", partition_id=2)
    _state().check_matches(tmp_path, client_id="edge-1", partition_id=1, alpha=None)
