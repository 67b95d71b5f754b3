"""What the graded tests rely on: own_work bars the package's answer, reference copies and the reloaded checkers
cannot be replaced from a notebook, and every hidden test of the notebooks listed below uses them."""

import importlib

import nbformat
import pytest
import torch

import dlcourse.checks
import dlcourse.forward
from dlcourse.checks import own_work, reference
from dlcourse.schedules import linear_schedule
from nbtools import HIDDEN_RE, ROOT, is_graded_test, nbgrader_meta, written_tasks

SCHEDULE = linear_schedule(50)
X_T, X_0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 3)

# the notebooks whose hidden tests reload the checkers, compare with reference copies and bar the package's answers
GUARDED = ["01_forward_diffusion", "03_learning_to_denoise", "04_samplers", "05_classifier_free_guidance",
           "06_latent_diffusion", "08_few_step_generation", "09_score_view",
           "07b_control_and_image_prompts"]
# exercises whose answer the package does not hold
NO_PACKAGE_ANSWER = {"test_time_res_block"}
GUARDED += ["00_welcome", "02_noise_schedules"]
GUARDED += ["10a_stable_diffusion"]
NO_PACKAGE_ANSWER |= {"test_to_model_range"}           # 00: the package has no bytes-to-[-1, 1] function
GUARDED += ["10b_imagen_and_flux"]
GUARDED += ["10d_sd3_mmdit"]
GUARDED += ["10e_dalle3_recaptioning"]
GUARDED += ["10c_sdxl"]


def _delegating(x_t, x_0, t):
    return dlcourse.forward.q_posterior(x_t, x_0, t, SCHEDULE)


def test_own_work_fails_a_function_that_calls_the_package_and_says_why():
    with pytest.raises(AssertionError, match=r"posterior_mean_variance calls dlcourse\.forward\.q_posterior: this "
                                             r"exercise asks you to write it yourself"):
        with own_work("posterior_mean_variance", "dlcourse.forward:q_posterior"):
            _delegating(X_T, X_0, 3)


def test_own_work_catches_any_route_to_the_package_function():
    from dlcourse.forward import q_posterior as renamed

    def through_another_function(x_t, x_0, t):
        return dlcourse.forward.q_posterior_sample(x_t, x_0, t, SCHEDULE)   # calls q_posterior inside

    def through_a_reloaded_module(x_t, x_0, t):
        return importlib.reload(dlcourse.forward).q_posterior(x_t, x_0, t, SCHEDULE)

    def swallowing_the_error(x_t, x_0, t):
        try:
            return renamed(x_t, x_0, t, SCHEDULE)
        except AssertionError:
            return X_0, 0.0

    for answer in (lambda *a: renamed(*a, SCHEDULE), through_another_function, through_a_reloaded_module,
                   swallowing_the_error):
        with pytest.raises(AssertionError, match="does not count"):
            with own_work("posterior_mean_variance", "dlcourse.forward:q_posterior"):
                answer(X_T, X_0, 3)
    importlib.reload(dlcourse.forward)


def test_own_work_lets_the_learners_own_code_and_reference_copies_run():
    ref = reference("dlcourse.forward")

    def own(x_t, x_0, t):
        ab, ab_prev, beta = SCHEDULE.alphas_cumprod[t], SCHEDULE.alphas_cumprod[t - 1], SCHEDULE.betas[t]
        mean = ab_prev.sqrt() * beta / (1 - ab) * x_0 + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * x_t
        return mean, (1 - ab_prev) / (1 - ab) * beta

    with own_work("posterior_mean_variance", "dlcourse.forward:q_posterior", "dlcourse.forward:q_posterior_sample"):
        mine = own(X_T, X_0, 3)
        expected = ref.q_posterior(X_T, X_0, 3, SCHEDULE)     # the copy may run inside the block
        dlcourse.forward.q_sample(X_0, 3, SCHEDULE)           # and package functions that are not barred
    torch.testing.assert_close(mine[0], expected[0])
    # the profiler is gone after the block, and a barred function runs again
    dlcourse.forward.q_posterior(X_T, X_0, 3, SCHEDULE)


def test_own_work_checks_its_references():
    for bad in ("dlcourse.forward", "dlcourse.forward:no_such_function", "dlcourse.no_such_module:f"):
        with pytest.raises(ValueError, match="references"):
            with own_work("f", bad):
                pass


def test_a_reference_copy_and_the_reloaded_checkers_ignore_what_a_notebook_replaced(monkeypatch):
    monkeypatch.setattr(dlcourse.forward, "q_sample", lambda *a, **k: torch.zeros(1))
    monkeypatch.setattr(dlcourse.checks, "check_close", lambda *a, **k: None)
    copy = reference("dlcourse.forward")
    assert copy is not dlcourse.forward and copy.q_sample.__code__.co_filename == dlcourse.forward.__file__
    assert copy.q_sample(X_0, 3, SCHEDULE, X_T).shape == X_0.shape
    fresh = importlib.reload(dlcourse.checks)                 # what the hidden tests do first
    with pytest.raises(AssertionError, match="not right yet"):
        fresh.check_close("x", torch.ones(2), torch.zeros(2))


@pytest.mark.parametrize("name", GUARDED)
def test_hidden_tests_reload_the_checkers_and_bar_the_package_answer(name):
    nb = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if not is_graded_test(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        hidden = HIDDEN_RE.search(cell.source).group(0)
        assert '_C = importlib.reload(importlib.import_module("dlcourse.checks"))' in hidden, grade_id
        assert "check_close, check_shape, check_true = _C.check_close" in hidden, grade_id
        if grade_id not in NO_PACKAGE_ANSWER:
            assert "with _C.own_work(" in hidden, f"{grade_id}: the hidden tests do not bar the package's answer"
            assert "own_work(" in HIDDEN_RE.sub("", cell.source), f"{grade_id}: the visible test does not say it"


def test_written_tasks_are_found():
    nb = nbformat.read(ROOT / "solutions" / "01_forward_diffusion" / "01_forward_diffusion.ipynb", as_version=4)
    assert written_tasks(nb) == {"written_closed_form": 3.0}


def test_a_reference_copy_leaves_the_model_registry_alone():
    from dlcourse.conditioning.text_encoder import TextEncoder
    from dlcourse.models import MODELS

    before = dict(MODELS)
    copy = reference("dlcourse.conditioning.text_encoder")
    assert copy.TextEncoder is not TextEncoder                     # a fresh copy of the class...
    assert MODELS == before and MODELS["TextEncoder"] is TextEncoder   # ...that did not replace the package's
