"""The example's trainer container: override a method here to change a step."""

from deepleaps.train import TrainerContainer


class ExampleContainer(TrainerContainer):
    def train_step(self) -> float:
        # The default step: forward, loss, backward, optimizer step. Add to it here.
        return super().train_step()
