"""Trains the model server's built-in model when the image is built, and writes it as model.json.

A scikit-learn LogisticRegression on the iris data set (which scikit-learn ships, so nothing is
downloaded). Before writing, it checks that server.py's pure-Python prediction from the exported
coefficients agrees with scikit-learn's own on every sample: the server needs no scikit-learn.

    python3 train_model.py /app/model.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from server import FORMAT, LinearModel
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def train() -> dict[str, object]:
    iris = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    exported = {
        "format": FORMAT,
        "classes": [str(iris.target_names[k]) for k in classifier.classes_],
        "coef": classifier.coef_.tolist(),
        "intercept": classifier.intercept_.tolist(),
        "features": [str(name) for name in iris.feature_names],
    }
    ours = LinearModel.from_dict(exported).predict(iris.data.tolist())
    theirs = [str(iris.target_names[k]) for k in classifier.predict(iris.data)]
    if ours != theirs:
        sys.exit("model.json predicts differently from scikit-learn: not written")
    accuracy = sum(p == t for p, t in zip(theirs, iris.target_names[iris.target], strict=True))
    print(f"trained on {len(theirs)} iris samples: training accuracy {accuracy / len(theirs):.3f}")
    return exported


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: train_model.py OUT.json", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(json.dumps(train(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
