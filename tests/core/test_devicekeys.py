"""Unit tests for pytest_hwopt.core.devicekeys: CPU feature keys, their validation and
precedence, resolution on fake CPUs with and without a flag."""

from __future__ import annotations

import itertools

import pytest

from pytest_hwopt.core.devicekeys import (
    CPU_FEATURES,
    DeviceKeyError,
    FeatureKey,
    check_key,
    check_keys,
    cpu_feature_keys,
    feature_key,
    key_rank,
    names_device,
    resolve_budget,
)

NAME = "Intel(R) Xeon(R) Platinum 8488C"
AVX2 = [NAME, *cpu_feature_keys(["avx2", "fma"]), "cpu"]
VNNI = [NAME, *cpu_feature_keys(["avx2", "fma", "avx512f", "avx512_vnni"]), "cpu"]
AMX = [NAME, *cpu_feature_keys(["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile",
                                "amx_int8", "amx_bf16"]), "cpu"]
UNKNOWN = [NAME, "cpu"]  # flags not read (no /proc/cpuinfo)
H100 = ["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]


# --- parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize("key,has,lacks", [
    ("cpu+avx512_vnni", {"avx512_vnni"}, set()),
    ("cpu-avx512_vnni", set(), {"avx512_vnni"}),
    ("CPU+AVX2-AVX512_VNNI", {"avx2"}, {"avx512_vnni"}),
    ("  cpu+amx_bf16+amx_tile ", {"amx_bf16", "amx_tile"}, set()),
    ("cpu-avx512f-avx_vnni", set(), {"avx512f", "avx_vnni"}),
])
def test_feature_key_parses_conditions(key, has, lacks):
    assert feature_key(key) == FeatureKey(key, frozenset(has), frozenset(lacks))


@pytest.mark.parametrize("key", ["cpu", "CPU", "cuda", "cuda:0", "H100", "EPYC", "Xeon(R)",
                                 "Apple M2", "cpu:0"])
def test_names_and_kinds_are_not_feature_keys(key):
    assert feature_key(key) is None
    check_key(key)


@pytest.mark.parametrize("key,words", [
    ("cpu+avx512vnni", ["'cpu+avx512vnni'", "unknown CPU flag 'avx512vnni'",
                        "recognised flags: " + ", ".join(CPU_FEATURES)]),
    ("cpu+", ["'cpu+'", "malformed", "recognised flags"]),
    ("cpu++avx2", ["malformed"]),
    ("cpu+avx2 +fma", ["malformed"]),
    ("cpu+AVX-512", ["unknown CPU flag 'avx'"]),
    ("+avx2", ["malformed", "'cpu+avx512_vnni'"]),
    ("-avx2", ["malformed"]),
    ("cpu+avx2+avx2", ["names flag 'avx2' twice"]),
    ("cpu+fma-fma", ["names flag 'fma' twice"]),
    ("cuda+fma", ["feature keys are for CPUs"]),
    ("cuda-fma", ["feature keys are for CPUs"]),
])
def test_malformed_feature_keys_are_errors_naming_the_key(key, words):
    with pytest.raises(DeviceKeyError) as info:
        feature_key(key)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("flag", CPU_FEATURES)
def test_a_bare_flag_name_is_an_error_that_shows_the_spelling(flag):
    with pytest.raises(DeviceKeyError, match=rf"write 'cpu\+{flag}' .* or 'cpu-{flag}'"):
        check_key(flag.upper())


def test_every_recognised_flag_has_both_keys():
    for flag in CPU_FEATURES:
        assert feature_key(f"cpu+{flag}") is not None
        assert feature_key(f"cpu-{flag}") is not None


# --- a whole map ----------------------------------------------------------------------------

@pytest.mark.parametrize("keys", [
    ["cpu", "cuda", "H100"],
    ["cpu", "cpu+avx512_vnni"],
    ["cpu-avx512_vnni", "cpu+avx512_vnni"],  # exclusive
    ["cpu+avx2", "cpu+avx2+avx512_vnni"],  # one includes the other
    ["cpu+avx2", "cpu+avx512_vnni", "cpu+avx2+avx512_vnni"],  # the union is given
    ["cpu+avx2-avx512_vnni", "cpu+avx512_vnni"],
    ["cpu+amx_bf16", "cpu+avx512_bf16-amx_bf16", "cpu"],
    ["EPYC", "cpu+avx512_vnni", "cpu"],
])
def test_maps_that_pick_one_entry_on_every_cpu_pass(keys):
    check_keys(keys)


def test_two_keys_that_can_match_one_cpu_need_their_union():
    with pytest.raises(DeviceKeyError) as info:
        check_keys(["cpu", "cpu+avx2", "cpu+avx512_vnni"])
    message = str(info.value)
    assert "'cpu+avx2' and 'cpu+avx512_vnni' both match a CPU with avx2, avx512_vnni" in message
    assert "add 'cpu+avx2+avx512_vnni'" in message
    assert "'cpu+avx2-avx512_vnni'" in message


def test_a_positive_and_a_negative_key_on_different_flags_are_ambiguous():
    with pytest.raises(DeviceKeyError, match="with avx2 and without amx_int8"):
        check_keys(["cpu+avx2", "cpu-amx_int8"])


def test_the_same_conditions_twice_are_an_error():
    with pytest.raises(DeviceKeyError, match="name the same CPUs"):
        check_keys(["cpu+fma+avx2", "cpu+AVX2+FMA"])


def test_check_keys_validates_each_key():
    with pytest.raises(DeviceKeyError, match="unknown CPU flag 'sse9'"):
        check_keys(["cpu", "cpu+sse9"])


# --- the device's keys ----------------------------------------------------------------------

def test_cpu_feature_keys_state_every_recognised_flag():
    keys = cpu_feature_keys(["fma", "AVX2", "not_a_feature"])
    assert keys[:2] == ["cpu+avx2", "cpu+fma"]
    assert len(keys) == len(CPU_FEATURES)
    assert {k[4:] for k in keys} == set(CPU_FEATURES)
    assert "cpu-avx512_vnni" in keys


def test_a_name_part_never_names_a_feature_key():
    assert not names_device("avx", "cpu+avx2")
    assert not names_device("vnni", "cpu-avx512_vnni")
    assert not names_device("cpu+avx2", "cpu+avx2")  # feature keys are matched by key_rank
    assert names_device("Xeon", NAME)


# --- precedence and resolution --------------------------------------------------------------

def test_feature_key_is_more_specific_than_cpu_and_less_than_the_name():
    name, feature, kind = (key_rank(k, VNNI) for k in ("Xeon", "cpu+avx512_vnni", "cpu"))
    assert name is not None and feature is not None and kind is not None
    assert name < feature < kind


def test_more_conditions_are_more_specific():
    one, two = (key_rank(k, VNNI) for k in ("cpu+avx512_vnni", "cpu+avx2+avx512_vnni"))
    assert one is not None and two is not None and two < one


@pytest.mark.parametrize("device,expected", [
    (VNNI, (3.0, "cpu+avx512_vnni")),
    (AMX, (3.0, "cpu+avx512_vnni")),
    (AVX2, (1.5, "cpu-avx512_vnni")),
    (UNKNOWN, (1.0, "cpu")),  # flags unknown: neither feature key, the kind's value
    (H100, (None, "")),
])
def test_resolution_on_fake_cpus_with_and_without_the_flag(device, expected):
    budget = {"cpu": 1.0, "cpu+avx512_vnni": 3.0, "cpu-avx512_vnni": 1.5}
    assert resolve_budget(budget, device) == expected


def test_map_order_does_not_change_the_choice():
    budget = {"cpu": 1.0, "cpu+avx2": 1.5, "cpu+avx512_vnni": 2.5, "cpu+avx2+avx512_vnni": 3.0,
              "cpu-amx_int8+avx512_vnni+avx2": 3.5, "cpu+amx_int8+avx2+avx512_vnni": 4.0}
    check_keys(budget)  # a valid map ...
    expected = {id(AVX2): 1.5, id(VNNI): 3.5, id(AMX): 4.0, id(UNKNOWN): 1.0}
    for order in itertools.permutations(budget.items()):  # ... resolves the same in any order
        for device in (AVX2, VNNI, AMX, UNKNOWN):
            assert resolve_budget(dict(order), device)[0] == expected[id(device)]


def test_name_beats_a_feature_key_and_without_an_entry_nothing_applies():
    assert resolve_budget({"Xeon": 9.0, "cpu+avx2": 2.0}, AVX2) == (9.0, "Xeon")
    assert resolve_budget({"cpu+amx_int8": 2.0}, VNNI) == (None, "")
    assert resolve_budget({"cpu+amx_int8": 2.0}, UNKNOWN) == (None, "")


def test_feature_keys_do_not_match_a_gpu():
    assert key_rank("cpu+avx2", H100) is None
    assert key_rank("cpu-avx2", H100) is None
