"""The "dataset" of a DIP fit is the step index: each batch is one int, nothing is copied."""
from __future__ import annotations

from torch.utils.data import DataLoader, Dataset


class StepIndex(Dataset):
    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def step_loader(n: int) -> DataLoader:
    return DataLoader(StepIndex(n), batch_size=None, shuffle=False, num_workers=0)
