"""The data module: deterministic (augmented) examples from (seed, epoch, index), fixed validation chunks."""

import torch
from hydra.utils import instantiate


def epoch_batches(datamodule, epoch: int) -> list[dict]:
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


AUGMENTED = ("augment=remix_silence", "data.target_stems=[vocals]")


def test_same_config_same_batches_whatever_the_workers(tiny_run):
    cfg = tiny_run(*AUGMENTED)
    reference = instantiate(cfg.data)
    reference.prepare_data()
    reference.setup("fit")
    with_workers = instantiate(cfg.data, num_workers=2)
    with_workers.setup("fit")
    for epoch in (0, 1):
        a, b = epoch_batches(reference, epoch), epoch_batches(with_workers, epoch)
        assert len(a) == len(b) == 2
        for x, y in zip(a, b):
            assert torch.equal(x["stems"], y["stems"]) and x["track"] == y["track"]
            assert torch.equal(x["mixture"], y["mixture"])
    remixed = [name for batch in a for name in batch["track"] if name.startswith("remix:")]
    assert remixed  # the augmentation really ran in the workers too


def test_epochs_differ_and_mixture_is_sum_of_stems(tiny_run):
    datamodule = instantiate(tiny_run(*AUGMENTED).data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    first, second = epoch_batches(datamodule, 0)[0], epoch_batches(datamodule, 1)[0]
    assert not torch.equal(first["stems"], second["stems"])
    assert first["stems"].shape == (4, 4, 2, 22050)
    torch.testing.assert_close(first["mixture"], first["stems"].sum(1))


def test_validation_chunks_are_fixed_and_never_augmented(tiny_run):
    datamodule = instantiate(tiny_run(*AUGMENTED).data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    plain = instantiate(tiny_run().data)
    plain.setup("fit")
    a, b = list(datamodule.val_dataloader()), list(plain.val_dataloader())
    # 2 valid tracks x 4 s, cut into 2 s chunks.
    assert sum(len(batch["track"]) for batch in a) == 4
    assert all(torch.equal(x["stems"], y["stems"]) for x, y in zip(a, b))


def test_gpu_trainers_set_persistent_pinned_workers_and_the_loaders_use_them(tiny_run):
    for trainer in ("gpu", "ddp"):
        data = tiny_run(f"trainer={trainer}").data
        assert data.num_workers > 0 and data.persistent_workers is True and data.pin_memory is True, trainer
    cpu = tiny_run().data
    assert (cpu.num_workers, cpu.pin_memory) == (0, False)

    # What trainer=gpu composes reaches the DataLoaders (one worker: fast on the CPU).
    datamodule = instantiate(tiny_run("trainer=gpu", "data.num_workers=1").data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()
    for loader in (train, val):
        assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (1, True, True)
    assert next(iter(train))["stems"].shape == (4, 4, 2, 22050)
    # Without workers there is nothing to keep alive (DataLoader refuses persistent_workers=True then).
    plain = instantiate(cpu)
    plain.setup("fit")
    loader = plain.train_dataloader()
    assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (0, False, False)
