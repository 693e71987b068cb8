import math

import pytest
import torch

from gendd_hf.losses import (
    DKD_DEFAULTS,
    decoupled_kd_terms,
    dkd_loss,
    kd_loss,
    kl_unsup_loss,
    soft_cross_entropy,
)


LN2 = math.log(2.0)
# Student uniform over 3 classes; teacher rows have probabilities (1/2, 1/4, 1/4) and (1/4, 1/2, 1/4).
STUDENT = torch.zeros(2, 3)
TEACHER = torch.tensor([[LN2, 0.0, 0.0], [0.0, LN2, 0.0]])


def manual_softmax(row, temperature):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def manual_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def test_kd_loss_hand_value_at_temperature_one():
    # KL((1/2, 1/4, 1/4) || uniform) = 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8), identical for both rows.
    expected = 0.5 * math.log(9 / 8)
    assert kd_loss(STUDENT, TEACHER, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_matches_manual_formula_with_temperature():
    student = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 3.0, 0.5]])
    temperature = 4.0
    per_row = [
        manual_kl(manual_softmax(t, temperature), manual_softmax(s, temperature))
        for s, t in zip(student.tolist(), teacher.tolist())
    ]
    expected = temperature**2 * sum(per_row) / 2
    assert kd_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-5)
    assert kd_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_gradient_is_scaled_probability_difference():
    student = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 3.0, 0.5]])
    temperature = 4.0
    kd_loss(student, teacher, temperature).backward()
    expected = temperature * (torch.softmax(student / temperature, -1) - torch.softmax(teacher / temperature, -1)) / 2
    torch.testing.assert_close(student.grad, expected.detach())


def test_kl_unsup_loss_is_kd_loss():
    assert kl_unsup_loss is kd_loss


def test_decoupled_kd_terms_hand_values():
    # Row 0, label 0: teacher binary (1/2, 1/2) vs student (1/3, 2/3); non-target (1/2, 1/2) vs (1/2, 1/2).
    # Row 1, label 0: teacher binary (1/4, 3/4) vs (1/3, 2/3); non-target {1, 2}: (2/3, 1/3) vs (1/2, 1/2).
    labels = torch.tensor([0, 0])
    tckd, nckd = decoupled_kd_terms(STUDENT, TEACHER, labels, temperature=1.0)
    tckd_rows = [0.5 * math.log(1.5) + 0.5 * math.log(0.75), 0.25 * math.log(0.75) + 0.75 * math.log(9 / 8)]
    nckd_rows = [0.0, 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)]
    assert tckd.item() == pytest.approx(sum(tckd_rows) / 2, rel=1e-5)
    assert nckd.item() == pytest.approx(sum(nckd_rows) / 2, rel=1e-5)


def test_decoupled_kd_terms_recompose_classic_kd():
    # DKD paper, Eq. 4: KD = TCKD + (1 - p^t_y) NCKD, checked per sample (batch of one) at T = 4.
    student = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 3.0, 0.5]])
    labels = torch.tensor([2, 1])
    temperature = 4.0
    for row in range(2):
        s, t, y = student[row : row + 1], teacher[row : row + 1], labels[row : row + 1]
        tckd, nckd = decoupled_kd_terms(s, t, y, temperature)
        p_target = torch.softmax(t / temperature, -1)[0, y].item()
        assert (tckd + (1 - p_target) * nckd).item() == pytest.approx(kd_loss(s, t, temperature).item(), rel=1e-5)


def test_dkd_loss_weights_and_warmup():
    labels = torch.tensor([0, 0])
    tckd, nckd = decoupled_kd_terms(STUDENT, TEACHER, labels, temperature=1.0)
    full = dkd_loss(STUDENT, TEACHER, labels, alpha=1.0, beta=8.0, temperature=1.0)
    assert full.item() == pytest.approx((tckd + 8.0 * nckd).item(), rel=1e-6)
    ramped = dkd_loss(STUDENT, TEACHER, labels, alpha=1.0, beta=8.0, temperature=1.0, epoch=5, warmup_epochs=20)
    assert ramped.item() == pytest.approx(full.item() / 4, rel=1e-6)
    late = dkd_loss(STUDENT, TEACHER, labels, alpha=1.0, beta=8.0, temperature=1.0, epoch=30, warmup_epochs=20)
    assert late.item() == pytest.approx(full.item(), rel=1e-6)


def test_dkd_defaults_are_accepted_keyword_arguments():
    labels = torch.tensor([1, 2])
    for name, defaults in DKD_DEFAULTS.items():
        tckd, nckd = decoupled_kd_terms(STUDENT, TEACHER, labels, defaults["temperature"])
        loss = dkd_loss(STUDENT, TEACHER, labels, **defaults, epoch=defaults["warmup_epochs"])
        expected = defaults["alpha"] * tckd + defaults["beta"] * nckd
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6), name
    assert DKD_DEFAULTS["cifar100"]["beta"] == 8.0 and DKD_DEFAULTS["cifar100"]["temperature"] == 4.0


def test_dkd_loss_gradient_flows_only_to_student():
    student = torch.tensor([[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 3.0, 0.5]])
    dkd_loss(student, teacher, torch.tensor([0, 1])).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    # Shifting all logits of a row leaves every softmax unchanged, so each row's gradient sums to zero.
    torch.testing.assert_close(student.grad.sum(-1), torch.zeros(2), atol=1e-6, rtol=0)


def test_dkd_loss_is_finite_for_confident_teacher():
    teacher = torch.tensor([[60.0, -60.0, 0.0]])
    student = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    loss = dkd_loss(student, teacher, torch.tensor([0]), temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_soft_cross_entropy_hard_labels_hand_value():
    # Uniform logits over 3 classes: -log(1/3) for every row.
    assert soft_cross_entropy(STUDENT, torch.tensor([0, 2])).item() == pytest.approx(math.log(3), rel=1e-6)
    # Teacher rows as logits, labels 0 and 2: -log(1/2) and -log(1/4).
    expected = (LN2 + 2 * LN2) / 2
    assert soft_cross_entropy(TEACHER, torch.tensor([0, 2])).item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy_soft_targets_hand_value_and_gradient():
    logits = TEACHER.clone().requires_grad_(True)
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # Row 0: -(0.5 ln 1/2 + 0.5 ln 1/4) = 1.5 ln 2; row 1: -ln(1/4) = 2 ln 2.
    loss = soft_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx((1.5 * LN2 + 2 * LN2) / 2, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(logits.grad, (torch.softmax(TEACHER, -1) - targets) / 2)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    assert soft_cross_entropy(TEACHER, one_hot).item() == pytest.approx(
        soft_cross_entropy(TEACHER, torch.tensor([0, 2])).item(), rel=1e-6
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: kd_loss(torch.zeros(2, 3), torch.zeros(2, 4)), "same shape"),
        (lambda: kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0), "temperature"),
        (lambda: dkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.rand(2, 3)), "integer class indices"),
        (
            lambda: dkd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), epoch=1, warmup_epochs=0),
            "warmup",
        ),
        (lambda: soft_cross_entropy(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), "probabilities"),
        (lambda: soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4)), "probabilities"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
