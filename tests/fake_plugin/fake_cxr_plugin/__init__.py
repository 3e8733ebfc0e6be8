"""A throw-away plugin package, installed for tests by putting this folder (with its dist-info) on sys.path."""

from __future__ import annotations

import os
import time

import numpy as np

from cxrbench import Box, ImageSource, Sample


class BrightSpot:
    """Heatmap = the image itself: the demo's lesions are bright, so this beats the centre floor on some."""

    name = "fake-lesion"

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        side = min(image.shape)
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        return image[top : top + side, left : left + side]


class SlowLogged:
    """Sleeps per call and appends the prompt to $FAKE_PLUGIN_LOG, so tests can count the calls."""

    name = "fake-slow"

    def __init__(self, delay: str = "0.05"):
        self.delay = float(delay)

    def config(self) -> dict:
        return {"delay": self.delay}

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        time.sleep(self.delay)
        with open(os.environ["FAKE_PLUGIN_LOG"], "a") as log:
            log.write(prompt + "\n")
        side = min(image.shape)
        return image[:side, :side] + 0.0


class NanEverywhere:
    """Returns an all-NaN map for prompts containing 'lower', a valid one otherwise."""

    name = "fake-nan"

    def heatmap(self, image: np.ndarray, prompt: str) -> np.ndarray:
        if "lower" in prompt:
            return np.full((8, 8), np.nan)
        return np.random.default_rng(0).random((8, 8))


class TinyDataset:
    """Three 40 x 50 images; the second one cannot be read."""

    name = "fake-tiny"
    classes = ("Pneumonia",)

    def __iter__(self):
        for i in range(3):

            def load(i=i):
                if i == 1:
                    raise OSError("disk on fire")
                return np.random.default_rng(i).random((40, 50)).astype(np.float32)

            yield Sample(
                f"t{i}",
                f"img{i}",
                "Pneumonia",
                "left lower pneumonia",
                (Box(5, 5, 20, 30),),
                40,
                50,
                ImageSource(load, lambda i=i: f"tiny:{i}"),
            )
