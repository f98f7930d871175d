"""Genotype as data: JSON round trip, atomic save, and every validation error."""

import json

import pytest

from backend.errors import InputError
from backend.models import GENOTYPES, HAND_A3, OPS, SPACES, Genotype


def _data(**changes):
    data = HAND_A3.to_dict()
    data.update(changes)
    return data


def test_spaces_use_registered_ops_and_end_with_none():
    for space, names in SPACES.items():
        assert names[-1] == "none", space
        assert set(names) <= set(OPS)
    assert set(SPACES["extended"]) == set(SPACES["A"]) | set(SPACES["B"])


def test_hand_a3_content():
    ops = [op for _, op, _ in HAND_A3.edges()]
    assert HAND_A3.space == "A" and HAND_A3.num_nodes == 3
    assert ops.count("sep_conv_3x3") == 4 and ops.count("skip_connect") == 2
    assert GENOTYPES["HAND_A3"] is HAND_A3


def test_json_round_trip_and_value_semantics():
    text = HAND_A3.to_json()
    data = json.loads(text)
    assert data == {"space": "A", "num_nodes": 3,
                    "nodes": [[list(e) for e in node] for node in HAND_A3.nodes]}
    again = Genotype.from_json(text)
    assert again == HAND_A3 and hash(again) == hash(HAND_A3)
    assert Genotype("A", [[["sep_conv_3x3", 0], ["skip_connect", 1]]]) == \
        Genotype("A", ((("sep_conv_3x3", 0), ("skip_connect", 1)),))


def test_save_load_atomic(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text("old content")
    HAND_A3.save(path)
    assert Genotype.load(path) == HAND_A3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json"]  # no temp left


def test_every_op_of_extended_space_is_accepted():
    ops = [op for op in SPACES["extended"] if op != "none"]
    nodes = [[[op, 0], [op, 1]] for op in ops]
    assert Genotype("extended", nodes).num_nodes == len(ops)


@pytest.mark.parametrize("text, expected", [
    ("{not json", "invalid JSON"),
    (json.dumps([1, 2]), "must be a JSON object"),
    (json.dumps({"space": "A", "nodes": []}), "must be a JSON object"),
    (json.dumps(_data(space="C")), "unknown search space 'C'"),
    (json.dumps(_data(num_nodes=2)), "'num_nodes' is 2 but 'nodes' lists 3"),
    (json.dumps(_data(num_nodes="3")), "'num_nodes' must be an integer"),
    (json.dumps(_data(nodes="abc", num_nodes=3)), "'nodes' must be a list"),
    (json.dumps(_data(nodes=[], num_nodes=0)), "at least one node"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0]]], num_nodes=1)), "node 1 must be a pair"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0, 1], ["skip_connect", 1]]], num_nodes=1)),
     "node 1, edge 1 must be [operation name, input index]"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0], ["skip_connect", True]]], num_nodes=1)),
     "node 1, edge 2 must be"),
    (json.dumps(_data(nodes=[[["conv_5x5", 0], ["skip_connect", 1]]], num_nodes=1)),
     "node 1, edge 1: unknown operation 'conv_5x5'"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0], ["conv_9x1_1x9", 1]]], num_nodes=1)),
     "node 1, edge 2: operation 'conv_9x1_1x9' is not in search space 'A'"),
    (json.dumps(_data(nodes=[[["none", 0], ["skip_connect", 1]]], num_nodes=1)),
     "node 1, edge 1: 'none'"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0], ["skip_connect", 2]]], num_nodes=1)),
     "node 1, edge 2: input index 2 out of range; node 1 reads 0..1"),
    (json.dumps(_data(nodes=[[["sep_conv_3x3", 0], ["skip_connect", 1]],
                             [["sep_conv_3x3", -1], ["skip_connect", 1]]], num_nodes=2)),
     "node 2, edge 1: input index -1 out of range"),
])
def test_load_validation_errors(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        Genotype.load(path)
    assert info.value.path == str(path)
    assert expected in info.value.problem
    assert "\n" not in str(info.value)


def test_missing_file_and_direct_construction_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read genotype file"):
        Genotype.load(tmp_path / "absent.json")
    with pytest.raises(InputError, match="not in search space 'B'"):
        Genotype("B", [[["dil_3_conv_3x3", 0], ["skip_connect", 1]]])
