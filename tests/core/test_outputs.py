"""Unit tests for pytest_hwopt.core.outputs: comparing nested outputs of two variants."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from pytest_hwopt.core.outputs import OutputDiff, OutputMismatch, compare, flatten, to_numpy


def test_identical_arrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    diff = compare(a, a.copy(), 1e-4, 1e-4)
    assert diff == OutputDiff(True, 0.0, 0.0, "-", 0, 12, 1e-4, 1e-4)


def test_worst_element_and_its_location():
    ref = np.zeros((3, 4))
    cand = ref.copy()
    cand[0, 1] = 0.25
    cand[2, 3] = -0.5
    diff = compare(cand, ref, atol=0.3, rtol=0.0)
    assert not diff.ok
    assert diff.max_abs == 0.5
    assert diff.where == "output at (2, 3)"
    assert (diff.mismatched, diff.total) == (1, 12)


def test_tolerance_is_atol_plus_rtol_times_reference():
    ref = np.array([1.0, 100.0])
    cand = np.array([1.5, 150.0])
    assert compare(cand, ref, atol=0.5, rtol=0.5).ok  # limits 1.0 and 50.5
    diff = compare(cand, ref, atol=0.4, rtol=0.0)
    assert (diff.ok, diff.mismatched) == (False, 2)
    assert diff.max_rel == 0.5


def test_nested_dict_list_tuple_paths():
    ref = {"logits": np.ones((2, 2)), "aux": [np.zeros(3), (np.ones(1), 2.0)]}
    cand = {"aux": [np.zeros(3), (np.ones(1), 2.0)], "logits": np.ones((2, 2))}
    cand["logits"][1, 0] = 3.0
    diff = compare(cand, ref, 1e-4, 1e-4)
    assert diff.where == "output['logits'] at (1, 0)"
    assert diff.max_abs == 2.0
    assert (diff.mismatched, diff.total) == (1, 4 + 3 + 1 + 1)


def test_flatten_follows_the_exporter_order():
    # mappings in insertion order (as torch.export flattens them), None dropped, a tuple
    # or list of numbers is one array
    out = {"b": (np.ones(1), None, [np.zeros(2), 3.0]), "a": [1, 2]}
    assert [p for p, _ in flatten(out)] == ["output['b'][0]", "output['b'][2][0]",
                                           "output['b'][2][1]", "output['a']"]


def test_dicts_pair_by_key_whatever_their_order():
    assert compare({"b": np.ones(2), "a": np.zeros(2)}, {"a": np.zeros(2), "b": np.ones(2)},
                   0.0, 0.0).ok


def test_a_flat_sequence_pairs_with_a_structure_in_exporter_order():
    # what ONNX Runtime returns for a module returning (x, None, {"h": (y, z)})
    x, y, z = np.arange(3.0), np.ones(2), np.zeros(4)
    diff = compare([x, y, z + 1], (x, None, {"h": (y, z)}), 1e-6, 0.0)
    assert not diff.ok and diff.where == "output[2]['h'][1] at (0,)"
    assert compare((x,), (x, None), 0.0, 0.0).ok


def test_structure_mismatch_names_a_few_paths_and_counts_the_rest():
    ref = tuple(np.ones(1) for _ in range(12))
    with pytest.raises(OutputMismatch) as info:
        compare({"x": np.ones(1)}, ref, 0.0, 0.0)
    assert str(info.value) == (
        "output structure differs: candidate has 1 output(s), reference has 12; only the "
        "candidate has output['x']; only the reference has output[0], output[1], output[2], "
        "output[3], output[4] and 7 more")


def test_non_numeric_leaves_are_compared_by_equality():
    assert compare(("cat", np.ones(2)), ("cat", np.ones(2)), 0.0, 0.0).ok
    diff = compare({"label": "dog", "x": np.ones(2)}, {"label": "cat", "x": np.ones(2)},
                   0.0, 0.0)
    assert not diff.ok and diff.unequal == ("output['label']: 'dog' != 'cat'",)
    assert diff.describe().endswith("; not equal: output['label']: 'dog' != 'cat'")
    other = object()
    assert not compare(object(), other, 0.0, 0.0).ok
    assert compare(other, other, 0.0, 0.0).ok


def test_a_long_list_of_floats_is_one_array():
    values = [float(i) for i in range(100_000)]
    [(path, leaf)] = list(flatten(values))
    assert path == "output" and leaf.shape == (100_000,)
    start = time.perf_counter()
    diff = compare(list(values), values, 0.0, 0.0)
    # one vectorised pass; one leaf at a time took 8.6 s
    assert diff.ok and diff.total == 100_000 and time.perf_counter() - start < 2.0


def test_ragged_or_mixed_lists_stay_containers():
    assert [p for p, _ in flatten([[1.0, 2.0], [3.0]])] == ["output[0]", "output[1]"]
    assert [p for p, _ in flatten([1.0, "a"])] == ["output[0]", "output[1]"]


def test_complex_outputs():
    assert compare(np.array([1 + 1j]), np.array([1 + 1j]), 0.0, 0.0).ok
    assert compare(np.array([1 + 2j]), np.array([1 + 1j]), 0.5, 0.0).max_abs == 1.0


def test_scalar_leaf_location_has_no_index():
    diff = compare((1.0, 2.5), (1.0, 2.0), 1e-4, 0.0)
    assert diff.where == "output[1]"
    assert diff.max_abs == 0.5


def test_lists_and_tuples_compare_alike():
    assert compare([np.ones(2)], (np.ones(2),), 0.0, 0.0).ok


def test_none_leaves_are_skipped():
    diff = compare((np.ones(2), None), (np.ones(2), None), 0.0, 0.0)
    assert diff.ok and diff.total == 2


def test_integer_and_bool_outputs():
    assert compare(np.array([1, 2, 3]), np.array([1, 2, 3]), 0.0, 0.0).ok
    diff = compare(np.array([True, False]), np.array([True, True]), 0.0, 0.0)
    assert (diff.ok, diff.mismatched, diff.where) == (False, 1, "output at (1,)")


def test_structure_mismatch():
    with pytest.raises(OutputMismatch, match="output structure differs"):
        compare((np.ones(2), np.ones(2)), np.ones(2), 1e-4, 1e-4)
    with pytest.raises(OutputMismatch, match="output structure differs"):
        compare({"a": np.ones(2)}, {"b": np.ones(2)}, 1e-4, 1e-4)


def test_shape_mismatch_names_the_leaf():
    with pytest.raises(OutputMismatch) as info:
        compare({"x": np.ones((2, 3))}, {"x": np.ones((3, 2))}, 1e-4, 1e-4)
    assert str(info.value) == "output['x']: shape (2, 3) differs from the reference's (3, 2)"


def test_output_mismatch_is_a_value_error():
    assert issubclass(OutputMismatch, ValueError)


# --- NaN and infinities --------------------------------------------------------------------


def test_nan_in_both_counts_as_equal():
    ref = np.array([1.0, np.nan, 3.0])
    diff = compare(ref.copy(), ref, 0.0, 0.0)
    assert diff.ok and diff.max_abs == 0.0 and diff.mismatched == 0


def test_nan_in_candidate_only_is_a_mismatch():
    diff = compare(np.array([1.0, np.nan]), np.array([1.0, 2.0]), 1e-4, 1e-4)
    assert not diff.ok
    assert diff.mismatched == 1
    assert diff.max_abs == np.inf
    assert diff.where == "output at (1,)"


def test_nan_in_reference_only_is_a_mismatch():
    diff = compare(np.array([1.0, 2.0]), np.array([1.0, np.nan]), 1e-4, 1e-4)
    assert not diff.ok
    assert diff.mismatched == 1


def test_infinite_reference_needs_the_same_infinity():
    with warnings.catch_warnings():  # isolate the verdict from the RuntimeWarning below
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = compare(np.array([5.0, -np.inf]), np.array([np.inf, np.inf]), 1e-4, 1e-4)
    assert not diff.ok
    assert diff.mismatched == 2


def test_equal_infinities_have_zero_error():
    ref = np.array([1.0, np.inf, -np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = compare(ref.copy(), ref, 1e-4, 1e-4)
    assert diff.ok
    assert diff.max_abs == 0.0 and diff.where == "-"


def test_equal_infinities_compare_without_warning():
    ref = np.array([1.0, np.inf, -np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare(ref.copy(), ref, 1e-4, 1e-4)


def test_difference_from_zero_reference_has_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diff = compare(np.array([10.0]), np.array([0.0]), 1e-4, 1e-4)
    assert not diff.ok and diff.max_abs == 10.0


def test_small_difference_from_zero_reference():
    diff = compare(np.array([0.5, 0.0]), np.array([0.0, 0.0]), 1e-4, 1e-4)
    assert (diff.ok, diff.mismatched, diff.max_abs) == (False, 1, 0.5)
    assert diff.where == "output at (0,)"


# --- to_numpy, describe ---------------------------------------------------------------------


class FakeTensor:
    """Duck-typed tensor: detach().cpu(), is_floating_point(), float(), numpy()."""

    def __init__(self, data, floating=True):
        self.data, self.floating, self.calls = data, floating, []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def is_floating_point(self):
        return self.floating

    def float(self):
        self.calls.append("float")
        return FakeTensor(self.data.astype(np.float32), self.floating)

    def numpy(self):
        return self.data


def test_to_numpy_widens_floating_tensors():
    t = FakeTensor(np.array([1.0, 2.0], dtype=np.float16))
    out = to_numpy(t)
    assert out.dtype == np.float32
    assert t.calls == ["detach", "cpu", "float"]


def test_to_numpy_keeps_integer_tensors():
    t = FakeTensor(np.array([1, 2], dtype=np.int64), floating=False)
    assert to_numpy(t).dtype == np.int64
    assert "float" not in t.calls


def test_to_numpy_numbers_and_lists():
    assert to_numpy(3.5).shape == ()
    assert to_numpy([1, 2]).tolist() == [1, 2]


def test_compare_accepts_tensors():
    ref = FakeTensor(np.array([1.0, 2.0], dtype=np.float16))
    cand = FakeTensor(np.array([1.0, 2.5], dtype=np.float16))
    diff = compare(cand, ref, 0.1, 0.0)
    assert (diff.ok, diff.max_abs, diff.where) == (False, 0.5, "output at (1,)")


def test_describe():
    diff = OutputDiff(False, 0.5, 0.125, "output at (1, 2)", 3, 10, 1e-4, 0.0, 0.25)
    assert diff.describe() == ("max abs error 0.5, max rel error 0.125 at output at (1, 2), "
                               "relative L2 error 0.25; 3 of 10 elements outside atol=0.0001 "
                               "rtol=0")
    norm = OutputDiff(False, 0.5, 0.125, "output at (1, 2)", 3, 10, 0.1, 0.1, 0.25, 0.05)
    assert norm.describe() == ("max abs error 0.5, max rel error 0.125 at output at (1, 2), "
                               "relative L2 error 0.25 (limit 0.05)")
