"""Int8 quantisation settings of the ONNX Runtime backend, chosen from fake CPU facts."""

from __future__ import annotations

import pytest

from pytest_hwopt.backends.ort import cpu_has_vnni, int8_settings


@pytest.mark.parametrize("flags", [["avx2", "fma", "avx512f", "avx512_vnni"],
                                   ["avx2", "avx_vnni"], ["avx2", "amx_int8"]])
def test_full_range_where_the_cpu_has_int8_dot_products(flags):
    facts = {"machine": "x86_64", "cpu_flags": flags}
    assert cpu_has_vnni(facts) is True
    assert int8_settings(facts) == (False, "")


def test_reduced_range_without_vnni():
    facts = {"machine": "x86_64", "cpu_flags": ["avx2", "fma", "avx512f"]}
    assert cpu_has_vnni(facts) is False
    assert int8_settings(facts) == (True, "no VNNI")


def test_reduced_range_where_the_flags_are_unknown():
    facts = {"machine": "AMD64"}
    assert cpu_has_vnni(facts) is None
    assert int8_settings(facts) == (True, "CPU flags unknown")


@pytest.mark.parametrize("machine", ["aarch64", "arm64"])
def test_arm_keeps_the_full_range(machine):
    assert int8_settings({"machine": machine, "cpu_flags": []}) == (False, "")
