"""Checkpoints are written atomically and read as data: no pickled code, no callable a file names, no interpolation."""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_RUN, TINY_SOURCE, compose_config, registered_models
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sepnet import registry
from sepnet.checkpoints import checkpoint
from sepnet.checkpoints.checkpoint import CHECKPOINT_KEY
from sepnet.checkpoints.lightning_io import AtomicCheckpointIO, stale_temp_files
from sepnet.checkpoints.merging import merge_checkpoints
from sepnet.checkpoints.resume import resume_point
from sepnet.errors import SepnetError
from sepnet.evaluate import run_evaluation
from sepnet.models import SeparationModel
from sepnet.reproduce import reproduce
from sepnet.separate import run_separation
from sepnet.train import build_module, run_training


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, last)

    def disk_full_halfway(obj, f):
        f.write(b"\x80\x02" + b"x" * 50_000)  # a partial pickle reaches the disk, then the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("torch.save", disk_full_halfway)
    with pytest.raises(SepnetError) as error:
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, last)
    assert str(error.value).startswith(f"cannot write checkpoint '{last}' (disk full: ")
    assert str(error.value).endswith(
        f" free on the disk holding '{last.parent}', about 3.9 KiB needed); free disk space or choose another "
        "output folder with hydra.run.dir=<folder> (the previous checkpoint is intact)"
    )
    kept = io.load_checkpoint(last)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.ones(1000))
    assert os.listdir(last.parent) == ["last.ckpt"]  # no temporary file left behind


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from sepnet.atomic import save_torch
    from sepnet.checkpoints.lightning_io import AtomicCheckpointIO
    path = sys.argv[1]
    AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.ones(10)}, path)

    def slow_save(obj, f):
        f.write(b"\\x80\\x02partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

    save_torch({"global_step": 2}, path, save=slow_save, remove_stale=True)
    """
)


@pytest.mark.slow
def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    last = tmp_path / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(last)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = writer.stdout.readline()
    assert line == "writing\n", writer.communicate()[1][-2000:]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    assert checkpoint.read_checkpoint(last)["global_step"] == 1  # the previous file, whole
    assert len(stale_temp_files(last)) == 1  # the killed write's temporary file, never named last.ckpt
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, last)
    assert checkpoint.read_checkpoint(last)["global_step"] == 3
    assert stale_temp_files(last) == []  # cleaned up by the next good save


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(tiny_run, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "sepnet": {"config": {}}, "payload": RunsCode(marker)}, evil)
    expected = (
        f"checkpoint '{evil}' was refused: it would call posix.system when loaded, and sepnet never runs code "
        "from a checkpoint; use a checkpoint written by sepnet, or re-save a trusted one as a plain state_dict "
        "of tensors"
    )
    with pytest.raises(SepnetError) as error:
        checkpoint.load(evil)
    assert str(error.value) == expected
    with pytest.raises(SepnetError) as error:  # what Lightning's resume reads through
        AtomicCheckpointIO().load_checkpoint(evil)
    assert str(error.value) == expected
    with pytest.raises(SepnetError) as error:  # refused before any training starts
        run_training(tiny_run(f"resume={evil}"))
    assert str(error.value) == expected
    assert not marker.exists()


def test_truncated_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"w": torch.ones(10_000)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SepnetError, match=r"^checkpoint '.*cut.ckpt' cannot be read \(.*\); it may be truncated"):
        checkpoint.read_checkpoint(path)


# -- a checkpoint is data: crafted files naming callables are refused by every entry point ------------------------

TOUCH_RESOLVER = "sepnet_test_touch"


def _touch(path: str) -> str:
    """A resolver with a side effect: if any stored ``${sepnet_test_touch:<path>}`` were resolved, ``path`` appears."""
    Path(path).touch()
    return "resolved"


OmegaConf.register_new_resolver(TOUCH_RESOLVER, _touch, replace=True)


def payload(name: str, box: Path) -> dict:
    """A Hydra node that, instantiated, changes ``box`` (see ``test_every_payload_would_run_under_instantiate``)."""
    pickled = str(box / "evil.pkl")  # a pickle whose loading runs code: it creates box/unpickled
    return {
        "shutil.copyfile": {"_target_": "shutil.copyfile", "src": str(box / "secret.txt"), "dst": str(box / "copied.txt")},
        "torch.load": {"_target_": "torch.load", "f": pickled, "weights_only": False},
        "numpy.load": {"_target_": "numpy.load", "file": pickled, "allow_pickle": True},
        "os.makedirs": {"_target_": "os.makedirs", "name": str(box / "made")},
        "pathlib.Path.touch": {
            "_target_": "pathlib.Path.touch", "_args_": [{"_target_": "pathlib.Path", "_args_": [str(box / "touched")]}],
        },
        "builtins.exec": {"_target_": "builtins.exec", "_args_": [f"open({str(box / 'exec')!r}, 'w').close()"]},
        "builtins.eval": {"_target_": "builtins.eval", "_args_": [f"open({str(box / 'eval')!r}, 'w').close()"]},
    }[name]  # fmt: skip


HYDRA_BLOCKS = ("builtins.exec", "builtins.eval")
PAYLOADS = ["shutil.copyfile", "torch.load", "numpy.load", "os.makedirs", "pathlib.Path.touch", "builtins.exec", "builtins.eval"]


def resolver(box: Path) -> str:
    return f"${{{TOUCH_RESOLVER}:{box / 'resolved'}}}"


def make_box(box: Path) -> Path:
    """A sentinel folder: every payload would create or change a file in it."""
    box.mkdir(parents=True)
    (box / "secret.txt").write_text("the user's file")
    (box / "evil.pkl").write_bytes(pickle.dumps(RunsCode(box / "unpickled")))
    return box


@pytest.fixture
def box(tmp_path) -> Path:
    return make_box(tmp_path / "box")


def fingerprint(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def test_every_payload_would_run_under_instantiate(tmp_path):
    """The control: handed to ``hydra.utils.instantiate`` or resolved, each payload changes the box (so the
    tests below, which assert the box is unchanged, can fail)."""
    for name in PAYLOADS:
        box = make_box(tmp_path / name)
        before = fingerprint(box)
        node = payload(name, box)
        if name in HYDRA_BLOCKS:  # Hydra's own blocklist stops these two; called, they run all the same
            with pytest.raises(InstantiationException, match="blocklisted"):
                instantiate(node)
            {"builtins.exec": exec, "builtins.eval": eval}[name](*node["_args_"])
        else:
            with contextlib.suppress(InstantiationException):  # torch/numpy.load fail after unpickling: the code ran
                instantiate(node)
        assert fingerprint(box) != before, name
    before = fingerprint(box)
    OmegaConf.to_container(OmegaConf.create({"x": resolver(box)}), resolve=True)
    assert fingerprint(box) != before


# (case id, where in the sepnet entry, value(box), the key the message names)
CRAFTED = [
    *((f"model={name}", ("config", "model"), lambda box, n=name: payload(n, box), "model._target_") for name in PAYLOADS),
    ("frontend=shutil.copyfile", ("config", "frontend"), lambda box: payload("shutil.copyfile", box), "frontend._target_"),
    ("model.hidden_size=os.makedirs", ("config", "model", "hidden_size"), lambda box: payload("os.makedirs", box), "model.hidden_size"),
    ("frontend.sample_rate=shutil.copyfile", ("config", "frontend", "sample_rate"), lambda box: payload("shutil.copyfile", box), "frontend.sample_rate"),
    ("model.target_stems[0]=builtins.exec", ("config", "model", "target_stems", 0), lambda box: payload("builtins.exec", box), "model.target_stems[0]"),
    ("model.unknown=shutil.copyfile", ("config", "model", "unknown"), lambda box: payload("shutil.copyfile", box), "model.unknown"),
    ("model._target_=oc.env", ("config", "model", "_target_"), lambda box: "${oc.env:HOME}", "model._target_"),
    ("model.hidden_size=oc.env", ("config", "model", "hidden_size"), lambda box: "${oc.env:HOME}", "model.hidden_size"),
    ("model.hidden_size=resolver", ("config", "model", "hidden_size"), resolver, "model.hidden_size"),
    ("frontend.sample_rate=resolver", ("config", "frontend", "sample_rate"), resolver, "frontend.sample_rate"),
    ("model.target_stems[0]=resolver", ("config", "model", "target_stems", 0), resolver, "model.target_stems[0]"),
    ("data.stems[0]=resolver", ("config", "data", "stems", 0), resolver, "data.stems[0]"),
    ("data.target_stems[0]=resolver", ("config", "data", "target_stems", 0), resolver, "data.target_stems[0]"),
    ("run_name=resolver", ("config", "run_name"), resolver, "run_name"),
    ("lineage.parents=resolver", ("lineage", "parents"), lambda box: [resolver(box)], "lineage.parents[0]"),
    ("metrics=resolver", ("metrics", "val/sdr"), resolver, "metrics.val/sdr"),
]  # fmt: skip


def craft(sound: dict, where: tuple, value, path: Path) -> Path:
    """``sound`` (a real checkpoint) with one value of its sepnet entry replaced, saved at ``path``."""
    raw = copy.deepcopy(sound)
    node = raw[CHECKPOINT_KEY]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    torch.save(raw, path)
    return path


@pytest.fixture(scope="module")
def sound(tiny_checkpoint) -> dict:
    """The raw dict of a checkpoint a real tiny training run wrote (best.ckpt: it also holds the training state)."""
    return torch.load(tiny_checkpoint, weights_only=True)


@pytest.fixture(scope="module")
def configs(tiny_checkpoint, tiny_data_root, tmp_path_factory) -> dict:
    """Composed entry-point configs (train, evaluate, separate), deep-copied by each test."""
    out = tmp_path_factory.mktemp("entry_configs")
    data = [f"data.source.root={tiny_data_root}", *TINY_SOURCE]
    song = out / "song.wav"
    sf.write(song, np.zeros((4000, 2), np.float32), 22050)
    return {
        "train": compose_config("train", [*data, *TINY_RUN, "logger=none"], out / "train"),
        "evaluate": compose_config("evaluate", [*data, "ckpt=unset"], out / "evaluate"),
        "separate": compose_config("separate", ["ckpt=unset", f"input={song}", f"out={out / 'separated'}"], out / "separate"),
    }


def entry_point(name: str, path: Path, configs: dict, tiny_checkpoint: Path) -> Path:
    """Run entry point ``name`` in process on the crafted checkpoint at ``path``; returns the path its message names."""
    cfg = copy.deepcopy(configs.get({"init.pretrained": "train", "init.from_run": "train", "resume": "train"}.get(name, name)))
    if name == "checkpoint.load":
        checkpoint.load(path)
    elif name == "evaluate":
        cfg.ckpt = str(path)
        run_evaluation(cfg)
    elif name == "separate":
        cfg.ckpt = str(path)
        run_separation(cfg)
    elif name == "merge":
        merge_checkpoints([tiny_checkpoint, path])
    elif name == "init.pretrained":
        cfg.init.pretrained = str(path)
        build_module(cfg)
    elif name == "init.from_run":
        best = path.parent / "parent" / "2026-01-01_00-00-00" / "checkpoints" / "best.ckpt"
        best.parent.mkdir(parents=True)
        path.rename(best)
        cfg.init.from_run = str(path.parent / "parent")
        path = best.resolve()
        build_module(cfg)
    elif name == "resume":
        cfg.resume = str(path)
        resume_point(cfg, Path(cfg.paths.output_dir))
    else:
        raise AssertionError(name)
    return path


ENTRY_POINTS = ["checkpoint.load", "evaluate", "separate", "merge", "init.pretrained", "init.from_run", "resume"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("where", "value", "key"), [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_crafted_checkpoint_is_refused_and_nothing_runs(entry, where, value, key, sound, configs, tiny_checkpoint, box):
    crafted = craft(sound, where, value(box), box / "crafted.ckpt")
    before = fingerprint(box)
    with pytest.raises(SepnetError) as error:
        named = entry_point(entry, crafted, configs, tiny_checkpoint)
    named = crafted if entry != "init.from_run" else next(box.rglob("best.ckpt")).resolve()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint '{named}' was refused: {key} is ")
    if where[-1] in ("model", "frontend"):  # what the file named is shown
        assert repr(value(box)["_target_"]) in message
    after = fingerprint(box)
    if entry == "init.from_run":  # the crafted file was moved into a run folder, unchanged
        after = {k.replace("parent/2026-01-01_00-00-00/checkpoints/best.ckpt", "crafted.ckpt"): v for k, v in after.items()}
        after = {k: v for k, v in after.items() if v != b"<dir>" or k == "crafted.ckpt"}
    assert after == before


def test_crafted_data_node_is_data_for_inference_and_refused_by_resume(sound, configs, tiny_checkpoint, box):
    """A node inference does not build (``data.stems``) holding a Hydra node stays data: loaded as is, never
    instantiated; resume, which compares it with the run's own, refuses it."""
    node = payload("shutil.copyfile", box)
    crafted = craft(sound, ("config", "data", "stems"), node, box / "crafted.ckpt")
    before = fingerprint(box)
    assert checkpoint.load(crafted).config.data.stems == node
    with pytest.raises(SepnetError) as error:
        entry_point("resume", crafted, configs, tiny_checkpoint)
    assert str(error.value).startswith(f"cannot resume from '{crafted}': data.stems={node!r} in the checkpoint but ") and "\n" not in str(error.value)
    assert fingerprint(box) == before


def test_resume_refuses_callback_paths_outside_the_checkpoint_folder(sound, configs, tiny_checkpoint, box):
    """Lightning deletes a restored 'previous' checkpoint path it believes is its own; a crafted one is refused."""
    raw = copy.deepcopy(sound)
    state = next(v for k, v in raw["callbacks"].items() if k.startswith("ModelCheckpoint"))
    victim = f"{state['dirpath']}/../../../box/secret.txt"
    state["last_model_path"] = victim
    crafted = box / "crafted.ckpt"
    torch.save(raw, crafted)
    with pytest.raises(SepnetError) as error:
        entry_point("resume", crafted, configs, tiny_checkpoint)
    assert str(error.value).startswith(
        f"checkpoint '{crafted}' was refused: callbacks.ModelCheckpoint.last_model_path is {victim!r}, not a file in the folder"
    )


# -- the same through the entry points as a user runs them: one line, exit 2, nothing ran ---------------------------


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, check=False)


def refusal_line(path: Path, key: str = "model._target_") -> str:
    return f"sepnet: error: checkpoint '{path}' was refused: {key} is 'shutil.copyfile', not a sepnet "


def assert_refused(result: subprocess.CompletedProcess, path: Path, key: str = "model._target_") -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(refusal_line(path, key)), result.stderr[-3000:]


def test_separate_refuses_a_crafted_checkpoint(sound, box, tmp_path):
    crafted = craft(sound, ("config", "model"), payload("shutil.copyfile", box), box / "crafted.ckpt")
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 2), np.float32), 22050)
    before = fingerprint(box)
    result = run_module("sepnet.separate", f"ckpt={crafted}", f"input={song}", f"out={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_refused(result, crafted)
    assert fingerprint(box) == before and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["evaluate", "merge", "init.pretrained", "init.from_run", "resume"])
def test_entry_points_refuse_a_crafted_checkpoint(entry, sound, box, tmp_path, tiny_checkpoint, tiny_data_root):
    node = ("config", "frontend") if entry in ("evaluate", "resume") else ("config", "model")
    key = f"{node[-1]}._target_"
    crafted = craft(sound, node, payload("shutil.copyfile", box), box / "crafted.ckpt")
    run_dir = tmp_path / "run"
    train = [f"data.source.root={tiny_data_root}", *TINY_SOURCE, *TINY_RUN, "logger=none", f"hydra.run.dir={run_dir}"]
    named = crafted
    if entry == "evaluate":
        args = ["sepnet.evaluate", f"ckpt={crafted}", f"data.source.root={tiny_data_root}", *TINY_SOURCE, f"hydra.run.dir={run_dir}"]
    elif entry == "merge":
        args = ["sepnet.merge", f"ckpts=[{tiny_checkpoint},{crafted}]", f"out={tmp_path / 'merged.ckpt'}", f"hydra.run.dir={run_dir}"]
    elif entry == "init.pretrained":
        args = ["sepnet.train", *train, f"init.pretrained={crafted}"]
    elif entry == "init.from_run":
        named = box / "parent" / "2026-01-01_00-00-00" / "checkpoints" / "best.ckpt"
        named.parent.mkdir(parents=True)
        crafted = crafted.rename(named)
        args = ["sepnet.train", *train, f"init.from_run={box / 'parent'}"]
    else:
        args = ["sepnet.train", *train, f"resume={crafted}"]
    before = fingerprint(box)
    assert_refused(run_module(*args), named.resolve() if entry == "init.from_run" else named, key)
    assert fingerprint(box) == before
    assert not (run_dir / "checkpoints").exists() and not (tmp_path / "merged.ckpt").exists()


@pytest.mark.slow
def test_reproduce_refuses_a_crafted_checkpoint_in_its_chain(sound, box, tmp_path, tiny_data_root, capsys):
    """reproduce reads checkpoints through the steps it runs (here: evaluate of a finished run's best.ckpt)."""
    root = tmp_path / "reproduce"
    best = root / "crnn_long" / "2026-01-01_00-00-00" / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True)
    craft(sound, ("config", "model"), payload("shutil.copyfile", box), best)
    cfg = compose_config(
        "reproduce", [f"paths.outputs_root={root}", f"budgets.smoke.data_root={tiny_data_root}", "reproduce.steps=[test_crnn_long]"], root
    )
    before = fingerprint(box)
    with pytest.raises(SystemExit) as exit_info:
        reproduce(cfg)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sepnet: error: reproduce step test_crnn_long (evaluate) failed with exit status 2: ")
    assert refusal_line(best) in lines[0]
    assert fingerprint(box) == before


# -- what sepnet wrote still loads ---------------------------------------------------------------------------------


def test_checkpoint_of_the_old_format_loads_the_same_model(sound, tiny_checkpoint, tmp_path):
    """Checkpoints written before the registry (no version field; model named by its public or its
    module-qualified class name; the front end by its module before the sub-packages) rebuild the same separator."""
    loaded = checkpoint.load(tiny_checkpoint)
    assert loaded.config.model._target_ == "sepnet.models.CRNN"
    assert loaded.config.frontend._target_ == "sepnet.dsp.frontend.SpectralFrontEnd"
    mixture = torch.randn(1, 2, 4000)
    with torch.no_grad():
        expected = loaded.separator(mixture)
    for target in ("sepnet.models.CRNN", "sepnet.models.crnn.CRNN"):
        raw = copy.deepcopy(sound)
        del raw[CHECKPOINT_KEY]["version"]
        raw[CHECKPOINT_KEY]["config"]["model"]["_target_"] = target
        raw[CHECKPOINT_KEY]["config"]["frontend"]["_target_"] = "sepnet.spectral.SpectralFrontEnd"  # its old module
        old = tmp_path / "old.ckpt"
        torch.save(raw, old)
        with torch.no_grad():
            assert torch.equal(checkpoint.load(old).separator(mixture), expected)


def test_a_new_model_registers_itself_and_loads_from_its_name(monkeypatch):
    monkeypatch.setitem(registry.REGISTRIES, registry.MODEL, dict(registry.registered(registry.MODEL)))

    @registry.register_model
    class Tiny(SeparationModel):
        def __init__(self, target_stems: list[str], width: int = 2, scale: float = 1.0):
            super().__init__()
            self.target_stems, self.width, self.scale = target_stems, width, scale
            self.n_bins, self.audio_channels = 512, 2

    built = registry.build(registry.MODEL, {"_target_": "sepnet.models.Tiny", "target_stems": ["vocals"], "scale": 2}, "model")
    assert isinstance(built, Tiny) and built.scale == 2 and built.width == 2
    with pytest.raises(SepnetError, match=r"^model.width is 'wide' \(a str\), but Tiny takes int$"):
        registry.build(registry.MODEL, {"_target_": "sepnet.models.Tiny", "target_stems": ["vocals"], "width": "wide"}, "model")
    with pytest.raises(SepnetError, match=r"^model.target_stems is missing \(Tiny needs it\)$"):
        registry.build(registry.MODEL, {"_target_": "sepnet.models.Tiny"}, "model")


def test_training_builds_through_the_registry(tiny_run):
    with pytest.raises(SepnetError) as error:
        build_module(tiny_run("model._target_=shutil.copyfile"))
    assert str(error.value).startswith(f"model._target_ is 'shutil.copyfile', not a sepnet model ({registered_models()})")
    with pytest.raises(SepnetError, match=r"^model.hidden_size is 'big' \(a str\), but CRNN takes int; fix it"):
        build_module(tiny_run("model.hidden_size=big"))


def test_inference_imports_no_lightning():
    code = "import sys, sepnet.checkpoints.checkpoint, sepnet.registry; print(sorted(m for m in sys.modules if m.startswith('lightning')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_finding_checking_and_loading_checkpoints_imports_no_lightning():
    """Resume's checks, the config comparison, parents, models and the DSP need no Trainer: only training
    (sepnet.training, sepnet.checkpoints.lightning_io's Lightning plugin) imports Lightning."""
    modules = ["sepnet.checkpoints." + m for m in ("checkpoint", "compat", "merging", "parents", "pretrained", "resume")]
    modules += ["sepnet.atomic", "sepnet.models", "sepnet.dsp.frontend", "sepnet.inference.overlap_add", "sepnet.dsp.wiener"]
    code = f"import sys, {', '.join(modules)}; print(sorted(m for m in sys.modules if m.startswith('lightning')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_pretrained_without_a_config_entry_takes_the_tensors_only(sound, configs, tmp_path):
    """A sepnet entry lacking its config (another program's file) is a plain state_dict to ``init.pretrained``."""
    raw = copy.deepcopy(sound)
    del raw[CHECKPOINT_KEY]["config"]
    parent = tmp_path / "no_config.ckpt"
    torch.save(raw, parent)
    cfg = copy.deepcopy(configs["train"])
    cfg.init.pretrained = str(parent)
    module = build_module(cfg)
    assert torch.equal(module.separator.model.decoder[0].conv.weight, sound["state_dict"]["separator.model.decoder.0.conv.weight"])
    assert module.lineage["parents"] == [str(parent.resolve())]
