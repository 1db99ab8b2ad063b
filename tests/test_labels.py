"""The class vocabulary follows the challenge's own files, merges equivalents, keeps unknowns."""

from __future__ import annotations

import numpy as np
import pytest

from heartbeatai import labels


def test_scored_vocabulary_has_the_26_challenge_classes_with_common_abbreviations():
    vocab = labels.scored_vocabulary()
    assert len(vocab.classes) == 26
    assert {"RBBB", "LBBB", "PAC", "PVC", "AF", "NSR", "IAVB"} <= set(vocab.abbrs)
    assert not {"CRBBB", "CLBBB", "SVPB", "VPB"} & set(vocab.abbrs)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("59118001", "713427006"), ("164909002", "733534002"), ("63593006", "284470004"), ("17338001", "427172004")],
)
def test_equivalent_codes_map_to_the_first_code_of_their_weights_group(alias, canonical):
    assert labels.scored_vocabulary().canonical(alias) == canonical


def test_multi_hot_merges_equivalents_and_ignores_unknown_codes_without_error():
    vocab = labels.scored_vocabulary()
    hot = vocab.multi_hot(["59118001", "713427006", "999999"])
    assert hot.sum() == 1 and vocab.abbrs[int(np.argmax(hot))] == "RBBB"


def test_parse_dx_reads_abbreviations_of_the_2020_cpsc_release_and_keeps_unknowns():
    assert labels.parse_dx("RBBB, Normal,,I-AVB") == ["59118001", "426783006", "270492004"]
    # PVC in the CPSC release is the unscored ventricular-ectopics code, as the challenge mapped it.
    assert labels.parse_dx("PVC") == ["164884008"]
    assert labels.parse_dx("164889003,164889003, 12345") == ["164889003", "12345"]
    assert labels.parse_dx("") == []


def test_st_classes_are_available_only_as_an_option():
    assert "STD" not in labels.scored_vocabulary().abbrs
    assert {"STD", "STE"} <= set(labels.scored_vocabulary(include_st=True).abbrs)


def test_challenge_weights_are_square_over_the_canonical_codes_with_unit_diagonal():
    codes, weights = labels.challenge_weights()
    assert codes == labels.scored_vocabulary().codes
    assert weights.shape == (26, 26)
    np.testing.assert_allclose(np.diag(weights), 1.0)
    np.testing.assert_allclose(weights, weights.T)


def test_select_rejects_unknown_class_names_with_the_known_list():
    with pytest.raises(ValueError, match="unknown classes"):
        labels.scored_vocabulary().select(["AF", "NOPE"])
