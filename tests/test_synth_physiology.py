"""The synthetic ECGs are what their labels claim, measured with independent code
(tests/synth_measures.py: scipy peak detection and simple delineation). How far the
domains differ is tests/test_synth_separability.py's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import synth_measures as measure
from heartbeatai.data.synthetic.domains import reference_profile
from heartbeatai.data.synthetic.record import synthesize_record

FS = 250


def records_with(abbr: str, n: int = 12, seed: int = 0, rhythm: str | None = None,
                 rate_overlap: float = 0.0) -> list[np.ndarray]:
    """Signals of records whose true labels include `abbr` (drawn at prevalence 1, on
    `rhythm` at prevalence 1 as well when given: a finding needing P waves on NSR, say)."""
    prevalence = {abbr: 1.0, **({rhythm: 1.0} if rhythm else {})}
    profile = replace(reference_profile(include_st=True), prevalence=prevalence, rate_overlap=rate_overlap)
    rng = np.random.default_rng(seed)
    records = [synthesize_record(profile, FS, 10.0, rng) for _ in range(n)]
    return [r.signal for r in records if abbr in r.labels]


@pytest.mark.parametrize("abbr, low, high", [("NSR", 60, 100), ("SB", 30, 60), ("STach", 100, 180)])
def test_heart_rate_of_each_rhythm_is_in_its_clinical_range(abbr, low, high):
    rates = [measure.heart_rate(s, FS) for s in records_with(abbr)]
    assert len(rates) >= 10
    assert low <= min(rates) and max(rates) <= high, rates


def test_rate_overlap_makes_records_near_60_and_100_bpm_either_class():
    # Measured on the signals: with the ranges overlapping by 10 bpm, the slowest NSR records
    # are slower than the fastest SB ones (and likewise NSR against STach), which with the
    # default gaps never happens (the test above).
    rates = {abbr: [measure.heart_rate(s, FS) for s in records_with(abbr, n=40, rate_overlap=10.0)]
             for abbr in ("SB", "NSR", "STach")}
    assert min(rates["NSR"]) < max(rates["SB"]) and min(rates["STach"]) < max(rates["NSR"]), rates
    assert min(rates["SB"]) >= 30 and max(rates["STach"]) <= 180


def test_qrs_is_wide_in_bundle_branch_block_and_narrow_in_sinus_rhythm():
    normal = [measure.qrs_duration_ms(s, FS) for s in records_with("NSR")]
    rbbb = [measure.qrs_duration_ms(s, FS) for s in records_with("RBBB")]
    lbbb = [measure.qrs_duration_ms(s, FS) for s in records_with("LBBB")]
    assert max(normal) < 110, normal
    assert min(rbbb) >= 120 and min(lbbb) >= 120, (rbbb, lbbb)


def test_rbbb_has_a_terminal_r_prime_in_v1_and_lbbb_a_qs_in_v1_with_a_broad_r_in_v6():
    v1, v6 = measure.LEADS.index("V1"), measure.LEADS.index("V6")
    for s in records_with("RBBB", n=6):
        beat, centre = measure.median_beat(s, FS)
        onset, offset = measure.qrs_bounds(beat, centre, FS)
        terminal = beat[offset - int(0.04 * FS):offset, v1]
        assert terminal.max() > 0.2  # R' ends the QRS upright in V1
    for s in records_with("LBBB", n=6):
        beat, centre = measure.median_beat(s, FS)
        onset, offset = measure.qrs_bounds(beat, centre, FS)
        baseline = beat[onset - int(0.03 * FS):onset].mean(axis=0)
        qrs = beat[onset:offset] - baseline
        early = qrs[: (offset - onset) * 2 // 3, v1]
        assert early.max() < 0.15 < -early.min()  # QS: no R in V1 (its end meets the upright T)
        assert (qrs[:, v6] > 0.5 * qrs[:, v6].max()).sum() / FS >= 0.05  # R in V6 lasts >= 50 ms


def test_af_rr_is_far_more_irregular_than_sinus_rhythm():
    sinus = [measure.rr_irregularity(s, FS) for s in records_with("NSR")]
    af = [measure.rr_irregularity(s, FS) for s in records_with("AF")]
    assert np.median(af) > 5 * np.median(sinus) and min(af) > max(sinus), (af, sinus)


def test_af_has_fibrillatory_waves_and_no_p_waves_while_flutter_is_regular():
    sinus = [measure.atrial_activity_ratio(s, FS) for s in records_with("NSR")]
    af = [measure.atrial_activity_ratio(s, FS) for s in records_with("AF")]
    assert np.median(af) > 3 * np.median(sinus), (af, sinus)
    flutter = [measure.rr_irregularity(s, FS) for s in records_with("AFL")]
    assert max(flutter) < 0.05


def test_first_degree_av_block_and_prolonged_pr_take_pr_beyond_200_ms_iavb_further():
    normal = [measure.pr_interval_ms(s, FS) for s in records_with("NSR")]
    lpr = [measure.pr_interval_ms(s, FS) for s in records_with("LPR", rhythm="NSR")]
    iavb = [measure.pr_interval_ms(s, FS) for s in records_with("IAVB", rhythm="NSR")]
    assert len(lpr) >= 10 and len(iavb) >= 10
    assert max(normal) < 200 < min(lpr) and max(lpr) < min(iavb), (normal, lpr, iavb)


def test_frontal_axis_matches_left_and_right_axis_deviation():
    normal = [measure.frontal_axis_deg(s, FS) for s in records_with("NSR")]
    lad = [measure.frontal_axis_deg(s, FS) for s in records_with("LAD")]
    rad = [measure.frontal_axis_deg(s, FS) for s in records_with("RAD")]
    assert all(-30 < a < 90 for a in normal), normal
    assert all(a < -30 for a in lad), lad
    assert all(a > 90 for a in rad), rad


def test_low_qrs_voltage_stays_below_half_a_millivolt_in_the_limb_leads():
    low = [measure.qrs_peak_to_peak_mv(s, FS)[:6].max() for s in records_with("LQRSV")]
    normal = [measure.qrs_peak_to_peak_mv(s, FS)[:6].max() for s in records_with("NSR")]
    assert max(low) < 0.5 < min(normal), (low, normal)


def test_t_waves_are_inverted_in_tinv_flat_in_tab_and_late_in_lqt():
    normal = [measure.t_wave_mv(s, FS) for s in records_with("NSR")]
    inverted = [measure.t_wave_mv(s, FS) for s in records_with("TInv")]
    flat = [measure.t_wave_mv(s, FS) for s in records_with("TAb")]
    assert min(normal) > 0.1 and max(inverted) < -0.1, (normal, inverted)
    assert max(np.abs(flat)) < min(normal), (flat, normal)
    qt_normal = [measure.qt_peak_corrected_s(s, FS) for s in records_with("NSR")]
    qt_long = [measure.qt_peak_corrected_s(s, FS) for s in records_with("LQT")]
    assert min(qt_long) > max(qt_normal), (qt_long, qt_normal)


def test_pac_is_premature_with_a_normal_qrs_and_a_non_compensatory_pause():
    for s in records_with("PAC", n=8):
        rr = measure.rr_intervals(s, FS)
        k = int(np.argmin(rr))
        typical = np.median(rr)
        assert rr[k] < 0.8 * typical
        if k + 1 < rr.size:
            assert rr[k] + rr[k + 1] < 2 * typical - 0.1 * typical  # the sinus node was reset
    assert max(measure.qrs_duration_ms(s, FS) for s in records_with("PAC", n=8)) < 110


def test_pvc_is_premature_with_a_compensatory_pause():
    for s in records_with("PVC", n=8):
        rr = measure.rr_intervals(s, FS)
        k = int(np.argmin(rr))
        if k + 1 >= rr.size:
            continue
        typical = np.median(rr)
        assert rr[k] < 0.8 * typical
        assert abs(rr[k] + rr[k + 1] - 2 * typical) < 0.12 * typical


def test_st_elevation_and_depression_shift_the_st_segment_when_asked_for():
    st = {abbr: [measure.st_level_mv(s, FS) for s in records_with(abbr)] for abbr in ("STE", "STD", "NSR")}
    # J+60 ms already meets the rising T wave in sinus rhythm, so compare with it
    normal = np.median(st["NSR"])
    assert np.median(st["STE"]) > normal + 0.1 and np.median(st["STD"]) < normal - 0.1, st


def test_bradycardia_is_a_slow_rhythm_without_p_waves_unlike_sinus_bradycardia():
    brady = records_with("Brady")
    assert max(measure.heart_rate(s, FS) for s in brady) < 60
    assert max(measure.p_before_every_qrs(s, FS) for s in brady) < 0.5  # junctional: no P
    assert min(measure.p_before_every_qrs(s, FS) for s in records_with("SB")) >= 0.8


def test_sinus_arrhythmia_swings_the_rr_with_a_p_wave_before_every_qrs():
    sa = records_with("SA", rhythm="NSR") + records_with("SA", rhythm="SB", seed=1)
    assert len(sa) >= 20
    spread = [measure.rr_relative_range(s, FS) for s in sa]
    normal = [measure.rr_relative_range(s, FS) for s in records_with("NSR", n=30)]
    assert min(spread) > 0.12 > 2 * max(normal), (spread, normal)
    assert min(measure.p_before_every_qrs(s, FS) for s in sa) >= 0.8
    # what tells it from AF's irregular rhythm: AF has no P waves
    assert np.mean([measure.p_before_every_qrs(s, FS) for s in records_with("AF")]) < 0.5


def test_ectopic_atrial_rhythm_the_unscored_remainder_has_p_waves_inverted_in_ii():
    assert max(measure.p_wave_mv(s, FS) for s in records_with("ARH")) < -0.05
    assert min(measure.p_wave_mv(s, FS) for s in records_with("NSR")) > 0.05


def test_paced_rhythm_has_a_spike_before_every_wide_regular_qrs():
    paced = records_with("PR")
    assert len(paced) >= 10
    assert min(measure.pacing_spikes(s, FS) for s in paced) == 1.0
    assert min(measure.qrs_duration_ms(measure.despiked(s, 9), FS) for s in paced) >= 120
    assert max(measure.rr_irregularity(measure.despiked(s, 9), FS) for s in paced) < 0.02
    for abbr in ("NSR", "LBBB", "PVC", "AF"):
        assert max(measure.pacing_spikes(s, FS) for s in records_with(abbr)) == 0.0, abbr


def test_incomplete_rbbb_has_a_terminal_r_prime_in_v1_with_a_qrs_of_100_to_120_ms():
    for s in records_with("IRBBB"):
        assert 100 <= measure.qrs_duration_ms(s, FS) < 120
        assert measure.terminal_qrs_mv(s, FS, "V1") > 0.2


def test_unspecified_bbb_is_wide_with_r_prime_in_v1_but_no_s_in_lead_i_unlike_rbbb():
    for s in records_with("BBB"):
        assert measure.qrs_duration_ms(s, FS) >= 120
        assert measure.late_r_mv(s, FS, "V1") > 0.15  # R'
        assert measure.terminal_area_mv(s, FS, "I") > 0.02  # leftward terminal forces
    assert max(measure.terminal_area_mv(s, FS, "I") for s in records_with("RBBB")) < -0.02  # RBBB's wide S in I


def test_nonspecific_iv_conduction_delay_is_wide_without_a_bundle_branch_pattern():
    for s in records_with("NSIVCB"):
        assert measure.qrs_duration_ms(s, FS) > 110
        assert measure.terminal_qrs_mv(s, FS, "V1") < 0.1  # no R' (RBBB)
        assert measure.r_amplitude_mv(s, FS, "V1") > 0.02  # an r in V1: no QS (LBBB)


def test_left_anterior_fascicular_block_has_axis_below_minus_45_qr_in_avl_and_rs_inferiorly():
    for s in records_with("LAnFB"):
        assert measure.frontal_axis_deg(s, FS) < -45
        q, _, r = measure.initial_deflection(s, FS, "aVL")
        assert q < -0.05 and r > 0.3  # qR in aVL
        r_first, _, s_wave = measure.initial_deflection(s, FS, "III")
        assert r_first > 0.05 and s_wave < -0.5  # rS in III
        assert measure.qrs_duration_ms(s, FS) < 120
    # a plain left axis deviation opens III downward (no initial r)
    assert max(measure.initial_deflection(s, FS, "III")[0] for s in records_with("LAD", rhythm="NSR")) < 0


def test_abnormal_q_waves_are_40_ms_or_a_third_of_r_in_the_inferior_leads():
    def inferior_q_leads(s):
        return sum(duration >= 40 or ratio > 1 / 3
                   for duration, ratio in (measure.q_wave(s, FS, lead) for lead in ("II", "III", "aVF")))
    assert min(inferior_q_leads(s) for s in records_with("QAb", rhythm="NSR")) >= 2
    assert max(inferior_q_leads(s) for s in records_with("NSR", n=30)) <= 1


def test_poor_r_wave_progression_keeps_r_below_03_mv_up_to_v3():
    prwp = [measure.r_amplitude_mv(s, FS, "V3") for s in records_with("PRWP", rhythm="NSR")]
    normal = [measure.r_amplitude_mv(s, FS, "V3") for s in records_with("NSR", n=30)]
    assert max(prwp) < 0.3 and max(prwp) + 0.1 < min(normal), (prwp, normal)
