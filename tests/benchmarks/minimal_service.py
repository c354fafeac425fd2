"""The benchmark's floor: the smallest BentoML service that serves the model, with no database.

    bentoml serve tests.benchmarks.minimal_service:Minimal   # from the project root
"""

import json

import bentoml
import numpy as np


@bentoml.service(name="minimal", workers=2)  # as many workers as the drybeans service
class Minimal:
    """Predicts the tutorial's `data` string with the served model; records nothing.

    The API is async, like the drybeans service's, so that the two differ only in what happens per request.
    """

    model = bentoml.models.BentoModel("drybean_svc:latest")

    def __init__(self) -> None:
        self.pipeline = bentoml.sklearn.load_model(self.model)

    @bentoml.api(route="/predict")
    async def predict(self, data: str) -> dict[str, str]:
        """Labels of the rows in `data`, a JSON-encoded list of 16-feature rows."""
        labels = self.pipeline.predict(np.array(json.loads(data)))
        return {"predictions": json.dumps(labels.tolist())}
