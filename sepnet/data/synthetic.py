"""The embedded dataset: deterministic synthetic multitracks in the MUSDB18-HQ layout.

sepnet must train, test and demo with no download, so it renders its own songs.
Each track is a short excerpt of a made-up pop song with the four MUSDB18 stems:

    drums   pitched kicks (falling sine + beater click), snares (band-passed noise
            burst + tonal body), closed/open hats (high-passed noise), toms and a
            crash on fills, on a 4/4 grid with 8th or 16th hats and variations
    bass    a rhythmic line on the chord roots, fifths and octaves (saw/square
            with a decaying low-pass envelope)
    other   detuned pads with a slow attack and/or electric-piano-like keys
            comping the same chords
    vocals  a sung melody in the key: a harmonic source with a 1/f roll-off shaped
            by vowel formants (/a/ /e/ /i/ /o/ /u/, one per note), delayed
            vibrato, glides between notes, consonant noise and phrase rests

Every track draws its own tempo (80-150 BPM), key (12 tonics, major or minor),
chord progression, patterns, timbres, levels, panning and room, so tracks differ.
The stems share the key, the chords and the beat, and overlap in frequency (kick
and bass below 200 Hz, keys and voice in the mid range, snare/consonants/hats up
high): separating them is learnable but not trivial. Each stem passes through
the same kind of small stereo room, so reverb tails belong to their stem as in a
real mix.

Synthesis is vectorised numpy (no scipy): oscillators read band-limited
wavetables built with an inverse FFT, the voice is additive (harmonics weighted
by a formant envelope), noise is shaped in the FFT domain and reverb is an FFT
convolution. All randomness comes from ``np.random.SeedSequence(seed)``
children, one per instrument, so the same arguments give bit-identical output.

:func:`ensure_synthetic_dataset` renders the set once into
``<root>/<split>/<track>/{mixture,bass,drums,other,vocals}.wav`` plus ``beats.txt``
and a ``manifest.json``; later calls with the same parameters return at once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sepnet import STEMS
from sepnet.app.progress import progress
from sepnet.errors import SepnetError

GENERATOR_VERSION = 1
"""Bump whenever the rendered audio changes: cached datasets with another version are regenerated."""

DEFAULT_TRACKS = {"train": 20, "valid": 5, "test": 5}
_SPLIT_ORDER = ("train", "valid", "test")
_MANIFEST = "manifest.json"
_GENERATOR_NAME = "sepnet.data.synthetic"
_MIX_PEAK = 0.9

# ----------------------------------------------------------------------------- music theory

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# Chord roots as 0-based scale degrees (I=0 ... vii=6); only major/minor triads, so a
# root's fifth is always 7 semitones up (the bass relies on that).
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 5, 4), (3, 0, 4, 5)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 5, 4), (0, 5, 3, 4), (5, 6, 0, 0)),
}

# Formants F1-F3 in Hz of an adult male voice (Peterson & Barney averages); a
# per-track factor shortens the vocal tract for higher voices.
_VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_FORMANT_BANDWIDTHS = np.array([80.0, 100.0, 130.0])
_FORMANT_GAINS = np.array([1.0, 0.7, 0.4])

# Drum and bass patterns. Drum steps are 16ths of a 4/4 bar; bass notes are
# (start 8th, length in 8ths, semitones above the chord root).
_KICK_PATTERNS = ((0, 8), (0, 8, 10), (0, 6, 8), (0, 4, 8, 12), (0, 7, 10), (0, 3, 8, 11), (0, 10, 11))
_BASS_PATTERNS = (
    ((0, 3, 0), (3, 1, 0), (4, 2, 7), (6, 2, 12)),
    ((0, 2, 0), (2, 1, 0), (3, 1, 7), (4, 2, 0), (6, 1, 12), (7, 1, 7)),
    ((0, 1, 0), (1, 1, 0), (2, 1, 0), (3, 1, 0), (4, 1, 0), (5, 1, 0), (6, 1, 12), (7, 1, 7)),
    ((0, 1, 0), (1, 1, 0), (2, 2, 12), (4, 1, 0), (5, 1, 7), (6, 2, 0)),
    ((0, 4, 0), (4, 3, 7), (7, 1, 12)),
    ((0, 2, 0), (3, 1, 0), (4, 2, 12), (6, 2, 7)),
)
# Keys comping: (start 8th, length in 8ths).
_COMP_PATTERNS = (
    ((0, 3), (3, 3), (6, 2)),
    ((1, 1), (3, 1), (5, 1), (7, 1)),
    ((0, 2), (2, 2), (4, 2), (6, 2)),
    ((0, 4), (4, 4)),
    ((0, 2), (3, 2), (6, 1), (7, 1)),
)


def _hz(midi: np.ndarray | float) -> np.ndarray | float:
    """MIDI note number(s) -> frequency in Hz (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


@dataclass(frozen=True)
class _Song:
    """The plan every instrument of one track follows: tempo, key, chords, timing.

    Times are seconds from the start of the render buffer, which begins on a
    downbeat ``pre`` samples before the track itself, so the track is an excerpt
    that starts mid-bar with notes already sounding.
    """

    sample_rate: int
    bpm: float
    tonic: int  # pitch class 0..11
    scale: tuple[int, ...]
    chords: tuple[int, ...]  # scale degree of each bar's chord root
    pre: int  # samples of pre-roll before the track
    n_out: int  # samples of the track
    n_buf: int  # samples of the render buffer (pre-roll + track + tail)

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def n_bars(self) -> int:
        return len(self.chords)

    def time(self, bar: int, beats: float = 0.0) -> float:
        """Seconds from the buffer start of ``beats`` quarter notes into ``bar``."""
        return (4 * bar + beats) * self.beat

    def index(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def chord_degrees(self, bar: int, size: int = 3) -> list[int]:
        """Scale degrees (0..6) of the bar's chord: root, third, fifth (, seventh)."""
        return [(self.chords[bar] + 2 * i) % 7 for i in range(size)]

    def chord_classes(self, bar: int, size: int = 3) -> list[int]:
        """Pitch classes (0..11) of the bar's chord."""
        return [(self.tonic + self.scale[d]) % 12 for d in self.chord_degrees(bar, size)]

    def degree_midi(self, degree: int, tonic_midi: int) -> int:
        """MIDI pitch of scale degree ``degree`` (any integer, 7 per octave) above ``tonic_midi``."""
        return tonic_midi + 12 * (degree // 7) + self.scale[degree % 7]


def _plan_song(rng: np.random.Generator, duration: float, sample_rate: int) -> _Song:
    bpm = float(rng.integers(80, 151))
    mode = "major" if rng.random() < 0.5 else "minor"
    progressions = _PROGRESSIONS[mode]
    progression = progressions[rng.integers(len(progressions))]
    # Fast songs often hold a chord for two bars, slow ones change every bar.
    bars_per_chord = 1 if bpm < 110 else int(rng.integers(1, 3))
    bar_samples = 240.0 / bpm * sample_rate
    pre = int(rng.integers(0, int(bar_samples)))
    n_out = round(duration * sample_rate)
    n_buf = pre + n_out + int(2.5 * sample_rate)  # the tail lets notes and reverb ring past the cut
    n_bars = math.ceil(n_buf / bar_samples)
    chords = tuple(progression[(bar // bars_per_chord) % len(progression)] for bar in range(n_bars))
    return _Song(sample_rate, bpm, int(rng.integers(12)), _SCALES[mode], chords, pre, n_out, n_buf)


# ----------------------------------------------------------------------------- DSP building blocks

_TABLE_SIZE = 2048


def _add_at(buffer: np.ndarray, start: int, signal: np.ndarray) -> None:
    """Add ``signal`` (..., L) into ``buffer`` (..., N) from sample ``start``, clipped to the buffer."""
    n = buffer.shape[-1]
    lo, hi = max(start, 0), min(start + signal.shape[-1], n)
    if hi > lo:
        buffer[..., lo:hi] += signal[..., lo - start : hi - start]


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    """Equal-power pan of (samples,) to (2, samples); pan in [-1 (left), 1 (right)]."""
    angle = (np.clip(pan, -1.0, 1.0) + 1.0) * np.pi / 4
    return np.stack([np.cos(angle) * mono, np.sin(angle) * mono])


def _lowpass_gain(freqs: np.ndarray, cutoff: float) -> np.ndarray:
    """Magnitude of a 2nd-order Butterworth low-pass."""
    return 1.0 / np.sqrt(1.0 + (freqs / cutoff) ** 4)


def _band_gain(freqs: np.ndarray, low: float, high: float, order: int = 2) -> np.ndarray:
    """Magnitude of a Butterworth-like band-pass (high-pass at ``low``, low-pass at ``high``)."""
    highpass = 1.0 / np.sqrt(1.0 + (low / np.maximum(freqs, 1e-3)) ** (2 * order))
    return highpass / np.sqrt(1.0 + (freqs / high) ** (2 * order))


_NOISE_SIZE = 1 << 16  # ~3 s of noise to draw hits from: long enough never to sound repeated


def _shaped_noise(
    rng: np.random.Generator, sample_rate: int, low: float, high: float, n: int = _NOISE_SIZE
) -> np.ndarray:
    """(n,) white noise band-limited to [low, high] Hz in the FFT domain, unit RMS.

    FFT filtering is circular, so the buffer loops seamlessly for :func:`_noise_slice`.
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum *= _band_gain(np.fft.rfftfreq(n, 1.0 / sample_rate), low, high)
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _noise_slice(rng: np.random.Generator, noise: np.ndarray, length: int) -> np.ndarray:
    """(length,) from a random place in ``noise``, wrapping around: every hit gets fresh noise."""
    return np.take(noise, np.arange(length) + int(rng.integers(len(noise))), mode="wrap")


def _harmonic_amplitudes(f0: float, sample_rate: int, tilt: float, cutoff: float, odd: float = 0.0) -> np.ndarray:
    """Amplitudes of harmonics 1..K below 0.45 * sample rate: k^-tilt through a low-pass at ``cutoff``.

    ``odd`` in [0, 1] fades the even harmonics out (saw at 0 towards square at 1).
    """
    count = max(1, min(int(0.45 * sample_rate / f0), _TABLE_SIZE // 2 - 1))
    k = np.arange(1, count + 1, dtype=np.float64)
    amplitudes = k**-tilt * _lowpass_gain(k * f0, cutoff)
    amplitudes[1::2] *= 1.0 - odd
    return amplitudes


def _wavetable(amplitudes: np.ndarray) -> np.ndarray:
    """One cycle (TABLE_SIZE + 1,) with harmonic k+1 at ``amplitudes[k]``; the extra sample wraps for interpolation."""
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[1 : len(amplitudes) + 1] = -0.5j * _TABLE_SIZE * amplitudes
    table = np.fft.irfft(spectrum, _TABLE_SIZE)
    return np.append(table, table[0])


def _oscillator(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Read a wavetable at phase ``cycles`` (samples,), in periods, with linear interpolation."""
    position = np.mod(cycles, 1.0) * _TABLE_SIZE
    index = position.astype(np.int64)
    frac = position - index
    return table[index] + frac * (table[index + 1] - table[index])


def _envelope(
    sample_rate: int, gate: float, attack: float, release: float, decay: float = np.inf, sustain: float = 1.0
) -> np.ndarray:
    """Amplitude envelope (samples,) of a note held ``gate`` s: linear attack, exponential decay
    towards ``sustain`` with time constant ``decay``, linear release of ``release`` s after the gate."""
    n_gate = max(int(gate * sample_rate), 1)
    t = np.arange(n_gate + max(int(release * sample_rate), 1)) / sample_rate
    level = sustain + (1.0 - sustain) * np.exp(-np.maximum(t - attack, 0.0) / decay)
    level *= np.minimum(t / max(attack, 1e-4), 1.0)
    level[n_gate:] *= np.linspace(1.0, 0.0, len(t) - n_gate)
    return level


def _filtered_voice(
    sample_rate: int,
    f0: float,
    n: int,
    tilt: float,
    bright: float,
    dark: float,
    sweep: np.ndarray,
    odd: float = 0.0,
    phase: float = 0.0,
) -> np.ndarray:
    """(n,) tone whose low-pass moves from ``bright`` to ``dark`` Hz as ``sweep`` (n,) goes from 1 to 0.

    A crossfade of two band-limited wavetables stands in for a time-varying filter.
    """
    cycles = phase + f0 * np.arange(n) / sample_rate
    dark_tone = _oscillator(_wavetable(_harmonic_amplitudes(f0, sample_rate, tilt, dark, odd)), cycles)
    bright_tone = _oscillator(_wavetable(_harmonic_amplitudes(f0, sample_rate, tilt, bright, odd)), cycles)
    return dark_tone + sweep * (bright_tone - dark_tone)


def _room(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A stereo room impulse response (2, L): decorrelated decaying noise, darker as it decays."""
    rt60 = rng.uniform(0.5, 1.4)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    ir = rng.standard_normal((2, n)) * np.exp(-6.9 * t / rt60)
    # Air and walls absorb highs first: low-pass the tail progressively by mixing in a smoothed copy.
    smooth = np.fft.irfft(np.fft.rfft(ir) * _lowpass_gain(np.fft.rfftfreq(n, 1.0 / sample_rate), 2500.0), n)
    dark = np.minimum(t / (0.3 * rt60), 1.0)
    ir = (1.0 - dark) * ir + dark * smooth
    predelay = int(rng.uniform(0.008, 0.03) * sample_rate)
    ir = np.concatenate([np.zeros((2, predelay)), ir], axis=1)
    return ir / np.sqrt(np.sum(ir**2) / 2)


def _fft_size(n: int) -> int:
    """The smallest 2^a * 3^b * 5^c >= n: sizes pocketfft transforms fast."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def _reverberate(stems: dict[str, np.ndarray], ir: np.ndarray, wet: dict[str, float]) -> None:
    """Add ``wet[stem]`` times each stem (2, N) convolved with the room ``ir`` (2, L), in place."""
    names = [name for name in stems if wet.get(name, 0.0) > 0.0]
    if not names:
        return
    n = stems[names[0]].shape[-1]
    size = _fft_size(n + ir.shape[-1] - 1)
    # float32 is plenty for a reverb tail and halves the FFT time.
    ir_spectrum = np.fft.rfft(ir.astype(np.float32), size)
    dry = np.stack([stems[name] for name in names]).astype(np.float32)  # (stems, 2, N)
    tails = np.fft.irfft(np.fft.rfft(dry, size) * ir_spectrum, size)[..., :n]
    for name, tail in zip(names, tails):
        stems[name] += wet[name] * tail


# ----------------------------------------------------------------------------- drums


def _kick_sound(
    rng: np.random.Generator, sample_rate: int, f_high: float, f_low: float, decay: float, click: float
) -> np.ndarray:
    """(samples,) a sine whose pitch falls from ``f_high`` to ``f_low`` Hz, plus a beater click."""
    t = np.arange(int(5 * decay * sample_rate)) / sample_rate
    freq = f_low + (f_high - f_low) * np.exp(-t / rng.uniform(0.02, 0.06))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / decay)
    return body + click * rng.standard_normal(len(t)) * np.exp(-t / 0.002)


def _drums(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """The drum stem (2, n_buf): kick, snare, hats, toms and crash on the beat grid."""
    sr, n = song.sample_rate, song.n_buf
    nyquist = sr / 2
    kick = _kick_sound(
        rng, sr, rng.uniform(100, 170), rng.uniform(42, 62), rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.4)
    )
    toms = [
        _kick_sound(rng, sr, f * 1.4, f, rng.uniform(0.15, 0.3), 0.1) for f in sorted(rng.uniform(85, 240, 3))[::-1]
    ]
    # Snare: a tonal drum-head body (two modes) under a band-passed burst of wires.
    snare_t = np.arange(int(0.4 * sr)) / sr
    body_hz = rng.uniform(160, 250)
    snare_body = (np.sin(2 * np.pi * body_hz * snare_t) + 0.5 * np.sin(2 * np.pi * 1.59 * body_hz * snare_t)) * np.exp(
        -snare_t / rng.uniform(0.04, 0.08)
    )
    snare_env = np.exp(-snare_t / rng.uniform(0.06, 0.16))
    snare_tone = rng.uniform(0.3, 0.8)
    snare_noise = _shaped_noise(rng, sr, rng.uniform(700, 1500), min(rng.uniform(5000, 9000), 0.9 * nyquist))
    # Hats and crash: high-passed noise; the cut-off scales down at low sample rates.
    hat_noise = _shaped_noise(rng, sr, min(rng.uniform(6000, 8000), 0.6 * nyquist), 0.95 * nyquist)
    crash_noise = _shaped_noise(rng, sr, min(rng.uniform(3000, 4500), 0.4 * nyquist), 0.95 * nyquist)
    hat_closed = np.exp(-np.arange(int(0.25 * sr)) / (rng.uniform(0.015, 0.045) * sr))
    hat_open = np.exp(-np.arange(int(1.0 * sr)) / (rng.uniform(0.15, 0.35) * sr))
    crash_env = np.exp(-np.arange(int(3.0 * sr)) / (rng.uniform(0.8, 1.6) * sr))

    kick_pattern = _KICK_PATTERNS[rng.integers(len(_KICK_PATTERNS))]
    half_time = song.bpm > 120 and rng.random() < 0.25
    snare_steps = (8,) if half_time else (4, 12)
    hat_step = 1 if (song.bpm < 110 or rng.random() < 0.3) else 2  # 16ths on slow songs, else often 8ths
    hat_accents = rng.uniform(0.45, 0.8)
    fill_chance, ghost_chance, open_chance = rng.uniform(0.3, 0.9), rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.5)

    parts = {name: np.zeros(n) for name in ("kick", "snare", "hats", "crash")}
    tom_parts = np.zeros((len(toms), n))
    sixteenth = song.beat / 4

    def hit(part: np.ndarray, seconds: float, sound: np.ndarray, velocity: float) -> None:
        _add_at(part, song.index(seconds), velocity * sound)

    def noise_hit(part: np.ndarray, noise: np.ndarray, seconds: float, env: np.ndarray, velocity: float) -> None:
        hit(part, seconds, _noise_slice(rng, noise, len(env)) * env, velocity)

    previous_fill = True  # open the excerpt with a crash as if a section just started
    for bar in range(song.n_bars):
        start = song.time(bar)
        fill = bar % 4 == 3 and rng.random() < fill_chance
        fill_from = int(rng.choice([8, 12])) if fill else 16
        if previous_fill:
            noise_hit(parts["crash"], crash_noise, start, crash_env, rng.uniform(0.6, 0.9))
        previous_fill = fill
        steps = set(kick_pattern)
        if rng.random() < 0.2:  # an extra syncopated kick now and then
            steps.add(int(rng.choice([3, 6, 11, 14])))
        for step in sorted(steps):
            if step < fill_from:
                hit(parts["kick"], start + step * sixteenth, kick, rng.uniform(0.85, 1.0))
        for step in range(16):
            if step >= fill_from:
                break
            seconds = start + step * sixteenth
            if step in snare_steps:
                velocity = rng.uniform(0.85, 1.0)
            elif step % 2 == 1 and rng.random() < ghost_chance:
                velocity = rng.uniform(0.12, 0.3)
            else:
                velocity = 0.0
            if velocity:
                hit(parts["snare"], seconds, snare_tone * snare_body, velocity)
                noise_hit(parts["snare"], snare_noise, seconds, snare_env, velocity)
        for step in range(0, 16, hat_step):
            accent = 1.0 if step % 4 == 0 else hat_accents
            jitter = rng.normal(0.0, 0.003)  # a human hi-hat is never quite on the grid
            seconds = max(start + step * sixteenth + jitter, 0.0)
            if step == 14 and rng.random() < open_chance:
                noise_hit(parts["hats"], hat_noise, seconds, hat_open, 0.8)
            else:
                noise_hit(parts["hats"], hat_noise, seconds, hat_closed, accent * rng.uniform(0.8, 1.0))
        # The fill: snare and descending toms in 16ths, growing louder into the next bar.
        for step in range(fill_from, 16):
            seconds = start + step * sixteenth
            velocity = 0.55 + 0.45 * (step - fill_from) / max(16 - fill_from, 1)
            if rng.random() < 0.4:
                hit(parts["snare"], seconds, snare_tone * snare_body, velocity)
                noise_hit(parts["snare"], snare_noise, seconds, snare_env, velocity)
            else:
                tom = min((step - fill_from) * len(toms) // (16 - fill_from), len(toms) - 1)
                hit(tom_parts[tom], seconds, toms[tom], velocity)
        if fill:
            hit(parts["kick"], start + fill_from * sixteenth, kick, 0.9)

    # Kick centred; other pieces spread as seen from the drummer's seat.
    hat_side = rng.choice([-1.0, 1.0])
    stereo = _pan(parts["kick"], 0.0)
    stereo += _pan(parts["snare"] * rng.uniform(0.7, 1.0), rng.uniform(-0.15, 0.15))
    stereo += _pan(parts["hats"] * rng.uniform(0.15, 0.3), hat_side * rng.uniform(0.2, 0.6))
    stereo += _pan(parts["crash"] * rng.uniform(0.15, 0.3), -hat_side * rng.uniform(0.3, 0.7))
    for tom, pan in zip(tom_parts, np.linspace(-0.5, 0.5, len(toms)) * -hat_side):
        stereo += _pan(tom * 0.8, pan)
    return stereo


# ----------------------------------------------------------------------------- bass


def _bass(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """The bass stem (2, n_buf): roots, fifths and octaves of each chord in a per-track rhythm."""
    sr = song.sample_rate
    pattern = _BASS_PATTERNS[rng.integers(len(_BASS_PATTERNS))]
    tilt, odd = rng.uniform(0.9, 1.3), rng.uniform(0.0, 0.8)
    bright, dark = rng.uniform(500, 1400), rng.uniform(150, 320)
    sweep_time = rng.uniform(0.04, 0.2)
    gate_ratio = rng.uniform(0.6, 0.95)
    eighth = song.beat / 2
    mono = np.zeros(song.n_buf)
    for bar in range(song.n_bars):
        root = 28 + (song.chord_classes(bar)[0] - 28) % 12  # E1..D#2
        next_root = 28 + (song.chord_classes(min(bar + 1, song.n_bars - 1))[0] - 28) % 12
        for number, (step, length, interval) in enumerate(pattern):
            pitch = root + interval
            if rng.random() < 0.12:  # now and then swap the chord tone for variety
                pitch = root + int(rng.choice([0, 7, 12]))
            is_last = number == len(pattern) - 1
            if is_last and next_root != root and rng.random() < 0.4:
                pitch = next_root + int(rng.choice([-2, -1, 1, 2]))  # approach note into the next chord
            gate = length * eighth * gate_ratio
            n = int((gate + 0.05) * sr)
            sweep = np.exp(-np.arange(n) / (sweep_time * sr))
            tone = _filtered_voice(sr, float(_hz(pitch)), n, tilt, bright, dark, sweep, odd)
            env = _envelope(sr, gate, 0.004, 0.05, decay=0.4, sustain=0.7)[:n]
            _add_at(mono, song.index(song.time(bar, step / 2)), rng.uniform(0.8, 1.0) * tone[: len(env)] * env)
    return _pan(mono, rng.uniform(-0.1, 0.1))


# ----------------------------------------------------------------------------- other: pads and keys


def _voicing(classes: list[int], lowest: int) -> list[int]:
    """Each pitch class placed in the octave [lowest, lowest + 12): a close voicing that moves little."""
    return sorted(lowest + (pc - lowest) % 12 for pc in classes)


def _pads(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """Sustained chords (2, n_buf) of detuned voices with a slow attack, spread in stereo."""
    sr = song.sample_rate
    size = 4 if rng.random() < 0.4 else 3  # sevenths on some tracks
    voices = int(rng.integers(2, 4))
    detune = rng.uniform(4, 12)  # cents between voices
    tilt, cutoff = rng.uniform(1.0, 1.6), rng.uniform(1200, 3000)
    attack, release = rng.uniform(0.15, 0.6), rng.uniform(0.3, 0.8)
    lowest = int(rng.integers(50, 56))
    stereo = np.zeros((2, song.n_buf))
    bar = 0
    while bar < song.n_bars:
        end = bar + 1
        while end < song.n_bars and song.chords[end] == song.chords[bar]:
            end += 1  # hold the chord while it lasts
        gate = song.time(end) - song.time(bar)
        env = _envelope(sr, gate, attack, release)
        cycles = np.arange(len(env)) / sr
        for pitch in _voicing(song.chord_classes(bar, size), lowest):
            f0 = float(_hz(pitch))
            table = _wavetable(_harmonic_amplitudes(f0 * 1.01, sr, tilt, cutoff))
            for voice in range(voices):
                cents = detune * (voice - (voices - 1) / 2)
                tone = _oscillator(table, rng.random() + f0 * 2 ** (cents / 1200) * cycles)
                # Alternate voices left/right: the detuned copies give the pad its width.
                _add_at(stereo, song.index(song.time(bar)), _pan(tone * env, 0.5 * (-1) ** voice))
        bar = end
    return stereo / voices


def _keys(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """Electric-piano-like comping (2, n_buf): bright plucky chords that darken as they decay."""
    sr = song.sample_rate
    pattern = _COMP_PATTERNS[rng.integers(len(_COMP_PATTERNS))]
    lowest = int(rng.integers(55, 62))
    tilt, decay = rng.uniform(1.4, 2.2), rng.uniform(0.3, 0.9)
    bright, dark = rng.uniform(2500, 5000), rng.uniform(700, 1400)
    eighth = song.beat / 2
    mono = np.zeros(song.n_buf)
    for bar in range(song.n_bars):
        notes = _voicing(song.chord_classes(bar), lowest)
        for step, length in pattern:
            if rng.random() < 0.1:
                continue  # a skipped stab keeps the comping from sounding looped
            gate = length * eighth * 0.9
            n = int((gate + 0.08) * sr)
            sweep = np.exp(-np.arange(n) / (0.5 * decay * sr))
            env = _envelope(sr, gate, 0.003, 0.08, decay=decay, sustain=0.05)[:n]
            velocity = rng.uniform(0.7, 1.0)
            for pitch in notes:
                tone = _filtered_voice(
                    sr, float(_hz(pitch)), len(env), tilt, bright, dark, sweep[: len(env)], phase=rng.random()
                )
                _add_at(mono, song.index(song.time(bar, step / 2)), velocity * tone * env)
    return _pan(mono, rng.uniform(-0.5, 0.5))


def _other(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """The 'other' stem (2, n_buf): pads, keys or both, on the song's chords."""
    pads_rng, keys_rng = rng.spawn(2)
    choice = rng.choice(["pads", "keys", "both"], p=[0.4, 0.3, 0.3])
    stereo = np.zeros((2, song.n_buf))
    if choice in ("pads", "both"):
        stereo += _pads(song, pads_rng)
    if choice in ("keys", "both"):
        stereo += rng.uniform(0.6, 1.0) * _keys(song, keys_rng)
    return stereo


# ----------------------------------------------------------------------------- vocals


@dataclass(frozen=True)
class _Note:
    """A sung note: onset and end in seconds from the buffer start, MIDI pitch, vowel, loudness."""

    start: float
    end: float
    pitch: int
    vowel: str
    velocity: float


def _melody(song: _Song, rng: np.random.Generator, tonic_midi: int) -> list[list[_Note]]:
    """Phrases of notes: a random walk on the scale that lands on chord tones on strong beats, with rests."""
    eighth = song.beat / 2
    total = 8 * song.n_bars
    # Enter shortly after the excerpt starts, so even a short track has a voice.
    step = math.ceil(song.pre / song.sample_rate / eighth) + int(rng.integers(0, 3))
    degree = int(rng.integers(0, 5))
    phrases = []
    while step < total:
        end = min(step + int(rng.choice([6, 8, 12, 16])), total)
        phrase = []
        while step < end:
            length = min(int(rng.choice([1, 2, 3, 4], p=[0.3, 0.4, 0.15, 0.15])), end - step)
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -2, 9))
            bar = step // 8
            if step % 4 == 0 or length >= 3 or step + length >= end:
                # Strong beats and long notes sit on a chord tone, as a singer would.
                chord = song.chord_degrees(bar)
                degree = min(
                    (d for d in range(degree - 3, degree + 4) if d % 7 in chord and -2 <= d <= 9),
                    key=lambda d: (abs(d - degree), d),
                )
            seconds = song.time(0, step / 2)
            phrase.append(
                _Note(
                    seconds,
                    seconds + length * eighth,
                    song.degree_midi(degree, tonic_midi),
                    str(rng.choice(list(_VOWELS))),
                    rng.uniform(0.75, 1.0),
                )
            )
            step += length
        phrases.append(phrase)
        step += int(rng.choice([2, 3, 4, 6, 8]))  # breathe
    return phrases


def _sing_phrase(
    notes: list[_Note],
    rng: np.random.Generator,
    sample_rate: int,
    formant_scale: float,
    vibrato_rate: float,
    vibrato_depth: float,
    consonant_noise: np.ndarray,
) -> tuple[int, np.ndarray]:
    """Render one phrase: (start sample, (samples,) voice).

    Pitch, vibrato depth, loudness and formants are piecewise-linear curves over
    the phrase; the voice is the sum of harmonics of the pitch curve, each
    weighted by 1/k (glottal source and lip radiation) and by the vowel's formant
    resonances at its instantaneous frequency.
    """
    sr = sample_rate
    begin = notes[0].start
    last = notes[-1]
    release = 0.08
    n = int((last.end - begin + release) * sr)
    t = np.arange(n) / sr + begin

    pitch_x, pitch_y, depth_x, depth_y, loud_x, loud_y = [], [], [], [], [], []
    formant_x, formant_y = [], []
    previous = notes[0].pitch - rng.choice([0.0, 0.7, 1.5])  # sometimes scoop into the first note
    previous_formants = np.array(_VOWELS[notes[0].vowel]) * formant_scale
    consonants = []
    for number, note in enumerate(notes):
        length = note.end - note.start
        glide = min(rng.uniform(0.03, 0.09), 0.4 * length)
        pitch_x += [note.start, note.start + glide]
        pitch_y += [previous, note.pitch]
        previous = note.pitch
        # Vibrato starts only once the note has settled, and only on notes long enough for it.
        delay = rng.uniform(0.12, 0.25)
        depth = vibrato_depth * rng.uniform(0.7, 1.2) if length > delay + 0.15 else 0.0
        depth_x += [note.start, note.start + delay, min(note.start + delay + 0.2, note.end - 0.02), note.end - 0.01]
        depth_y += [0.0, 0.0, depth, depth]
        formants = np.array(_VOWELS[note.vowel]) * formant_scale
        formant_x += [note.start, note.start + min(0.06, 0.5 * length)]
        formant_y += [previous_formants, formants]
        previous_formants = formants
        articulated = number == 0 or rng.random() < 0.6  # a consonant: brief dip and a puff of noise
        if number > 0:
            loud_x.append(note.start - 0.03)
            loud_y.append(notes[number - 1].velocity)
        loud_x += [note.start, note.start + min(0.04, 0.3 * length)]
        loud_y += [0.0 if number == 0 else (0.35 if articulated else 0.9) * note.velocity, note.velocity]
        if articulated and rng.random() < 0.7:
            consonants.append(note.start)
    loud_x += [last.end - 0.02, last.end + release]
    loud_y += [0.85 * last.velocity, 0.0]

    # Piecewise-linear curves need strictly increasing knots; nudge equal ones apart.
    def curve(x: list[float], y: list) -> np.ndarray:
        knots = np.maximum.accumulate(np.asarray(x, dtype=np.float64))
        knots = knots + np.arange(len(knots)) * 1e-7
        values = np.asarray(y, dtype=np.float64)
        if values.ndim == 1:
            return np.interp(t, knots, values)
        return np.stack([np.interp(t, knots, values[:, j]) for j in range(values.shape[1])])

    drift_knots = begin + np.arange(0.0, n / sr + 0.3, 0.15)
    drift = np.interp(t, drift_knots, rng.normal(0.0, 0.06, len(drift_knots)))  # no one sings exactly in tune
    wobble = np.sin(2 * np.pi * vibrato_rate * (t - begin) + rng.uniform(0, 2 * np.pi))
    depth_curve = curve(depth_x, depth_y)
    f0 = _hz(curve(pitch_x, pitch_y) + depth_curve * wobble + drift)
    loudness = curve(loud_x, loud_y) * (1.0 + 0.15 * depth_curve * wobble)  # vibrato also sways the level
    formants = curve(formant_x, formant_y)  # (3, n)

    phase = 2 * np.pi * np.cumsum(f0) / sr
    top = min(0.45 * sr, 5500.0)
    harmonics = max(1, min(40, int(top / (f0.max() * 1.01))))
    voice = np.zeros(n)
    # Distances to the formants in half-bandwidths, (k * f0 - F) / (B / 2), as k * slope - offset;
    # float32 is ample for a spectral envelope and twice as fast.
    half_bandwidths = (_FORMANT_BANDWIDTHS * formant_scale / 2)[:, None]
    slope = (f0 / half_bandwidths).astype(np.float32)  # (3, n)
    offset = (formants / half_bandwidths).astype(np.float32)
    gains = _FORMANT_GAINS.astype(np.float32)
    # sin(k * phase) by the Chebyshev recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x): no sin per harmonic.
    sin_previous, sin_k, twice_cos = np.zeros(n), np.sin(phase), 2 * np.cos(phase)
    for k in range(1, harmonics + 1):
        resonance = 1.0 / np.sqrt(1.0 + np.square(k * slope - offset))  # (3, n)
        voice += (gains @ resonance + 0.02) / k * sin_k
        sin_previous, sin_k = sin_k, twice_cos * sin_k - sin_previous
    voice *= loudness
    # Breath: a little noise following the loudness; consonants: short noise bursts at onsets.
    voice += 0.04 * loudness * _noise_slice(rng, consonant_noise, n)
    burst = np.exp(-np.arange(int(0.04 * sr)) / (0.012 * sr))
    for seconds in consonants:
        _add_at(
            voice,
            int((seconds - begin) * sr) - len(burst) // 3,
            rng.uniform(0.1, 0.3) * burst * _noise_slice(rng, consonant_noise, len(burst)),
        )
    return round(begin * sr), voice


def _vocals(song: _Song, rng: np.random.Generator) -> np.ndarray:
    """The vocal stem (2, n_buf): a sung melody in the key, silent between phrases."""
    sr = song.sample_rate
    high_voice = rng.random() < 0.5
    if high_voice:
        tonic_midi, formant_scale = 57 + (song.tonic - 57) % 12, rng.uniform(1.1, 1.2)
    else:
        tonic_midi, formant_scale = 48 + (song.tonic - 48) % 12, rng.uniform(0.95, 1.05)
    vibrato_rate, vibrato_depth = rng.uniform(5.0, 6.0), rng.uniform(0.2, 0.45)  # semitones
    noise = _shaped_noise(rng, sr, min(2500.0, 0.25 * sr), min(8000.0, 0.45 * sr))
    mono = np.zeros(song.n_buf)
    for phrase in _melody(song, rng, tonic_midi):
        if song.index(phrase[0].start) >= song.n_buf:
            break
        start, voice = _sing_phrase(phrase, rng, sr, formant_scale, vibrato_rate, vibrato_depth, noise)
        _add_at(mono, start, voice)
    return _pan(mono, rng.normal(0.0, 0.08))


# ----------------------------------------------------------------------------- mixing


def _active_rms(x: np.ndarray, sample_rate: int) -> float:
    """RMS of (2, N) over its 50 ms frames that are not near-silent, so rests don't lower a stem's level."""
    frame = max(int(0.05 * sample_rate), 1)
    count = x.shape[-1] // frame
    if count == 0:
        return float(np.sqrt(np.mean(x**2)))
    power = np.mean(x[:, : count * frame].reshape(2, count, frame) ** 2, axis=(0, 2))
    active = power[power > 1e-3 * power.max()] if power.max() > 0 else power
    return float(np.sqrt(np.mean(active)))


# Loudness of each stem in dB RMS before the final peak normalisation.
_STEM_LEVELS = {"bass": -19.0, "drums": -17.0, "other": -21.0, "vocals": -18.0}
_REVERB = {"bass": (0.0, 0.04), "drums": (0.05, 0.15), "other": (0.15, 0.35), "vocals": (0.1, 0.3)}


def generate_track(seed: int, duration: float, sample_rate: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Render one synthetic song excerpt.

    Args:
        seed: any non-negative integer; the same arguments give bit-identical output.
        duration: seconds.
        sample_rate: Hz (>= 8000).

    Returns:
        stems: 'bass', 'drums', 'other', 'vocals' -> float32 (2, round(duration * sample_rate)),
            scaled so that neither their sum nor any stem peaks above 0.9.
        beat_times: (beats,) float64 seconds of the quarter-note grid the drums play on, within [0, duration).
    """
    _check_parameters(sample_rate, duration, seed)
    plan_rng, drums_rng, bass_rng, other_rng, vocals_rng, mix_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(6)
    )
    song = _plan_song(plan_rng, duration, sample_rate)
    stems = {
        "bass": _bass(song, bass_rng),
        "drums": _drums(song, drums_rng),
        "other": _other(song, other_rng),
        "vocals": _vocals(song, vocals_rng),
    }
    _reverberate(stems, _room(mix_rng, sample_rate), {name: mix_rng.uniform(*_REVERB[name]) for name in stems})

    fade = np.minimum(np.arange(song.n_out) / (0.01 * sample_rate), 1.0)  # no click where the excerpt is cut
    fade = np.minimum(fade, fade[::-1])
    for name in stems:
        excerpt = stems[name][:, song.pre : song.pre + song.n_out] * fade
        rms = _active_rms(excerpt, sample_rate)
        level = 10 ** ((_STEM_LEVELS[name] + mix_rng.uniform(-3.0, 3.0)) / 20)
        stems[name] = excerpt * (level / rms if rms > 0 else 0.0)
    master = 10 ** (mix_rng.uniform(-4.0, 0.0) / 20)
    peak = max(np.abs(sum(stems.values())).max(), *(np.abs(s).max() for s in stems.values()))
    gain = master * min(1.0, _MIX_PEAK / peak) if peak > 0 else 1.0
    stems = {name: (stems[name] * gain).astype(np.float32) for name in STEMS}
    # float32 rounding can push the sum a hair over the limit; pull it back exactly.
    excess = np.abs(sum(stems.values())).max() / _MIX_PEAK
    if excess > 1.0:
        stems = {name: (s / np.float32(excess * 1.0001)).astype(np.float32) for name, s in stems.items()}

    first = math.ceil(song.pre / sample_rate / song.beat - 1e-9)
    beats = np.arange(first, first + int(duration / song.beat) + 2) * song.beat - song.pre / sample_rate
    beats = np.maximum(beats[(beats >= -1e-9) & (beats < duration)], 0.0)  # a beat on sample 0 may round below 0
    return stems, beats


# ----------------------------------------------------------------------------- the dataset on disk


def _check_parameters(sample_rate: int, duration: float, seed: int) -> None:
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise SepnetError(
            f"synthetic data sample_rate {sample_rate} is not an integer >= 8000 Hz; set it to e.g. 22050"
        )
    if not (duration > 0 and math.isfinite(duration)):
        raise SepnetError(
            f"synthetic data duration {duration} must be a positive number of seconds; set it to e.g. 10.0"
        )
    if int(seed) != seed or seed < 0:
        raise SepnetError(f"synthetic data seed {seed} must be a non-negative integer")


def _ordered_tracks(tracks: dict[str, int]) -> list[tuple[str, int]]:
    """(split, count) in a fixed order (train, valid, test, then others by name): names don't depend on dict order."""
    for split, count in tracks.items():
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
            raise SepnetError(f"synthetic data: tracks for split '{split}' is {count!r}; give a non-negative integer")
    rank = {split: i for i, split in enumerate(_SPLIT_ORDER)}
    return [(split, int(tracks[split])) for split in sorted(tracks, key=lambda s: (rank.get(s, len(rank)), s))]


def _track_seed(seed: int, split: str, index: int) -> int:
    """Seed of track ``index`` of ``split``: independent of the other splits' sizes."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]).generate_state(1)[0])


def _track_names(ordered: list[tuple[str, int]]) -> dict[str, list[str]]:
    """synth_000, synth_001, ... numbered across splits, so names are unique in the whole set."""
    names, number = {}, 0
    for split, count in ordered:
        names[split] = [f"synth_{number + i:03d}" for i in range(count)]
        number += count
    return names


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _matches(manifest: dict, parameters: dict) -> bool:
    """Whether a manifest was written for exactly these parameters."""
    return {key: manifest.get(key) for key in parameters} == parameters


def _is_complete(root: Path, manifest: dict) -> bool:
    """Every track folder the manifest names has all its files (cheap: stat calls only)."""
    files = [f"{name}.wav" for name in ("mixture", *STEMS)] + ["beats.txt"]
    return all(
        (root / split / track / file).is_file()
        for split, tracks in manifest.get("track_names", {}).items()
        for track in tracks
        for file in files
    )


def _write_dataset(folder: Path, manifest: dict, sample_rate: int, duration: float, seed: int) -> None:
    """Render every track into ``folder``; the manifest is written last."""
    for split, names in manifest["track_names"].items():
        (folder / split).mkdir()  # even when empty: readers expect every split folder
        for index, name in enumerate(progress(names, f"synthetic {split}")):
            stems, beats = generate_track(_track_seed(seed, split, index), duration, sample_rate)
            track = folder / split / name
            track.mkdir()
            for stem, audio in stems.items():
                sf.write(track / f"{stem}.wav", audio.T, sample_rate, subtype="PCM_16")
            # The mixture is the float sum, quantised once (not a sum of quantised stems).
            sf.write(track / "mixture.wav", sum(stems.values()).T, sample_rate, subtype="PCM_16")
            (track / "beats.txt").write_text("".join(f"{t:.6f}\n" for t in beats))
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _holds(root: Path, parameters: dict) -> bool:
    """Whether ``root`` holds a complete synthetic set made with ``parameters``."""
    existing = _read_manifest(root) if root.is_dir() else None
    return existing is not None and _matches(existing, parameters) and _is_complete(root, existing)


def ensure_synthetic_dataset(
    root: str | Path,
    *,
    sample_rate: int = 22050,
    tracks: dict[str, int] | None = None,
    duration: float = 10.0,
    seed: int = 0,
) -> Path:
    """Generate (once) the synthetic dataset under ``root`` and return ``root`` as a Path.

    Layout: ``<root>/<split>/synth_NNN/{mixture,bass,drums,other,vocals}.wav`` (16-bit
    stereo at ``sample_rate``) and ``beats.txt`` (quarter-note times in seconds, one
    a line), plus ``<root>/manifest.json`` with the parameters. ``tracks`` maps split
    -> number of tracks (default ``{'train': 20, 'valid': 5, 'test': 5}``).

    If the manifest matches the parameters and the files are there, nothing is
    written. A complete set at another sample rate is never replaced (another run may be
    reading it): that is a user error naming the folder; ``conf/data/synthetic.yaml`` keeps
    one folder per rate, ``data/synthetic/<rate>``. Otherwise the whole set is rendered into ``<root>.tmp-<pid>`` and
    renamed into place, so an interrupted run never leaves a set that looks complete.
    An existing ``root`` is replaced only if it is empty or an earlier synthetic set.

    Raises:
        SepnetError: ``root`` is not a writable folder, or holds something else.
    """
    root = Path(root).expanduser()
    tracks = dict(DEFAULT_TRACKS if tracks is None else tracks)
    _check_parameters(sample_rate, duration, seed)
    ordered = _ordered_tracks(tracks)
    parameters = {
        "generator": _GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "sample_rate": int(sample_rate),
        "duration": float(duration),
        "seed": int(seed),
        "tracks": dict(ordered),
    }
    fix = "set data.source.root to a new or empty folder, or delete it"
    if root.exists() and not root.is_dir():
        raise SepnetError(f"synthetic dataset root '{root}' exists and is not a folder; {fix}")
    if _holds(root, parameters):
        return root
    existing = _read_manifest(root) if root.is_dir() else None
    if existing is not None and existing.get("generator") == _GENERATOR_NAME and _is_complete(root, existing):
        rate = existing.get("sample_rate")
        if rate != parameters["sample_rate"]:
            # Another run may be reading it: a set at another rate gets its own folder, never this one.
            raise SepnetError(
                f"synthetic dataset root '{root}' holds the set at {rate} Hz, which another run may be reading; "
                f"a set at {parameters['sample_rate']} Hz needs its own folder: set data.source.root to another "
                f"folder (the default data/synthetic/<rate> is one per rate)"
            )
    if root.is_dir() and any(root.iterdir()) and (existing is None or existing.get("generator") != _GENERATOR_NAME):
        raise SepnetError(
            f"synthetic dataset root '{root}' is a folder that does not hold a sepnet synthetic dataset "
            f"(no valid {_MANIFEST}), so it will not be overwritten; {fix}"
        )

    manifest = {**parameters, "stems": list(STEMS), "track_names": _track_names(ordered)}
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    old = root.with_name(f"{root.name}.old-{os.getpid()}")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed run with our pid
        tmp.mkdir()
        _write_dataset(tmp, manifest, int(sample_rate), float(duration), int(seed))
        if _holds(root, parameters):
            # Another process rendered the same set meanwhile and may be reading it (or writing its
            # decoded-audio cache into it): keep that one, drop ours.
            return root
        if root.is_dir():
            os.replace(root, old)
        try:
            os.replace(tmp, root)
        except OSError:
            if old.exists():
                os.replace(old, root)
            # Another process may have finished the same set first: that one is as good as ours.
            other = _read_manifest(root)
            if other is not None and _matches(other, parameters):
                return root
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SepnetError(
            f"cannot write the synthetic dataset to '{root}' ({reason}); set data.source.root to a folder "
            f"in a writable location"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return root
