"""Simple baselines scored on the same test split as the fine-tuned model. Each returns test logits
(log-probabilities), so every baseline gets the same metrics, intervals and paired tests."""
from __future__ import annotations

import numpy as np

BASELINES = ("majority_class", "tfidf_logreg", "linear_probe", "zero_shot")


def majority_class(train_y: np.ndarray, n_test: int, n_classes: int) -> np.ndarray:
    """Always the most frequent training class; the training class prior as probabilities."""
    prior = np.bincount(np.asarray(train_y, dtype=int), minlength=n_classes).astype(np.float64)
    prior /= prior.sum()
    return np.tile(np.log(np.clip(prior, 1e-12, None)), (n_test, 1))


def _logreg(train_x, train_y: np.ndarray, test_x, n_classes: int, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=c).fit(train_x, train_y)
    probs = np.full((test_x.shape[0], n_classes), 1e-12)
    probs[:, clf.classes_] = clf.predict_proba(test_x)
    return np.log(np.clip(probs, 1e-12, None))


def tfidf_logreg(train_texts: list[str], train_y: np.ndarray, test_texts: list[str], n_classes: int) -> np.ndarray:
    """TF-IDF (word uni- and bigrams) + logistic regression: the classic text baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    return _logreg(vec.fit_transform(train_texts), train_y, vec.transform(test_texts), n_classes, c=10.0)


def linear_probe(train_emb: np.ndarray, train_y: np.ndarray, test_emb: np.ndarray, n_classes: int) -> np.ndarray:
    """Logistic regression on the frozen pre-trained encoder's sentence embeddings."""
    return _logreg(train_emb, train_y, test_emb, n_classes, c=10.0)


def tuned_linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                       test_x: np.ndarray, n_classes: int,
                       grid=(0.001, 0.01, 0.1, 1.0, 10.0)) -> tuple[np.ndarray, float]:
    """Logistic regression on frozen features with its regularisation C chosen on validation accuracy
    (high-dimensional image features overfit at a fixed C); returns test logits and the chosen C."""
    from sklearn.linear_model import LogisticRegression

    scores = [(LogisticRegression(max_iter=2000, C=c).fit(train_x, train_y).score(val_x, val_y), -c) for c in grid]
    best = -max(scores)[1]  # ties go to the stronger regularisation
    return _logreg(train_x, train_y, test_x, n_classes, c=best), best


def zero_shot(test_emb: np.ndarray, label_emb: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """No training at all: cosine similarity between each text and each label's name or description."""
    from scipy.special import log_softmax

    return log_softmax(test_emb @ label_emb.T / temperature, axis=1)


def label_phrase(label: str, descriptions: dict[str, str] | None = None) -> str:
    """What zero-shot compares a text with: the description if given, else the label name in words."""
    if descriptions and label in descriptions:
        return descriptions[label]
    return label.replace("_", " ").replace("-", " ")
