"""What a published music tagger hears in audio files: musicnn (Pons and Serra, ISMIR 2019 LBD;
its weights ship in its PyPI package), trained on the Million Song Dataset's last.fm tags
(MSD_musicnn: genres such as rock, pop, Hip-Hop, folk, ambient) and on MagnaTagATune
(MTT_musicnn: genres and instruments). Each file's tag probabilities, averaged over its 3 s
patches, as JSON on stdout: {file: {model: {tag: probability}}}.

Runs in its own environment (TensorFlow; `./dev.sh genre-tagger`), called by bench_genre.py:

    .venv-genre/bin/python benchmarks/genre_tags.py a.wav b.wav ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# musicnn builds its graph with tf.compat.v1.layers, which only Keras 2 (tf-keras) provides.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import librosa
import musicnn
import numpy as np
import tensorflow as tf
from musicnn import configuration, models

MODELS = {"MSD_musicnn": configuration.MSD_LABELS, "MTT_musicnn": configuration.MTT_LABELS}
PATCH_S = 3.0  # the input length musicnn's taggers were trained on


def log_mel(path: Path) -> np.ndarray:
    """musicnn's input (its extractor.batch_data), but scaled in float32: musicnn rounds the
    mel spectrogram to float16, as in training, and then scales it there too, where any bin
    above 6.55 (a loud mix's low end) overflows to infinity and turns the taggram to NaN."""
    audio, rate = librosa.load(path, sr=configuration.SR)
    mel = librosa.feature.melspectrogram(y=audio, sr=rate, hop_length=configuration.FFT_HOP,
                                         n_fft=configuration.FFT_SIZE,
                                         n_mels=configuration.N_MELS).T  # fmt: skip
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def patches(representation: np.ndarray, frames: int) -> np.ndarray:
    starts = range(0, representation.shape[0] - frames + 1, frames)
    return np.stack([representation[start : start + frames] for start in starts])


def tag(files: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    tf.compat.v1.disable_eager_execution()
    frames = librosa.time_to_frames(PATCH_S, sr=configuration.SR, n_fft=configuration.FFT_SIZE,
                                    hop_length=configuration.FFT_HOP) + 1  # fmt: skip
    inputs = {path: patches(log_mel(path), frames) for path in files}
    result: dict[str, dict[str, dict[str, float]]] = {str(path): {} for path in files}
    for model, labels in MODELS.items():
        tf.compat.v1.reset_default_graph()
        x = tf.compat.v1.placeholder(tf.float32, [None, frames, configuration.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits = models.define_model(x, is_training, model, len(labels))[0]
        probabilities = tf.nn.sigmoid(logits)
        with tf.compat.v1.Session() as session:
            # Fails loudly where musicnn's own extractor swallows a failed restore.
            weights = Path(musicnn.__file__).parent / model
            tf.compat.v1.train.Saver().restore(session, f"{weights}/")
            for path, batch in inputs.items():
                taggram = session.run(probabilities, {x: batch, is_training: False})
                means = zip(labels, taggram.mean(axis=0), strict=True)
                result[str(path)][model] = {label: float(p) for label, p in means}
    return result


if __name__ == "__main__":
    json.dump(tag([Path(name) for name in sys.argv[1:]]), sys.stdout)
