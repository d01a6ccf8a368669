import numpy as np

from tunesmith.evaluate.calibration import expected_calibration_error, fit_temperature
from tunesmith.evaluate.metrics import softmax


def test_temperature_scaling_fixes_an_over_confident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(4000, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(true_logits)])
    over = true_logits * 4.0  # same ranking, far too confident
    t = fit_temperature(over[:2000], y[:2000])
    assert 3.0 < t < 5.0
    before = expected_calibration_error(softmax(over[2000:]), y[2000:])
    after = expected_calibration_error(softmax(over[2000:] / t), y[2000:])
    assert after < before / 3
    assert (softmax(over / t).argmax(1) == over.argmax(1)).all()  # argmax unchanged
