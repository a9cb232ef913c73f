"""Every redundancy scheme against every loss pattern, byte for byte (numcodecs/redset style).

The model every scheme follows: pieces form stripes, and a stripe survives while at most
``tolerance`` of its pieces are lost (parity: one block per stripe; mirror: ``copies - 1``
copies; stripe: none). A loss of backups decodes exactly when every stripe survives.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpickpt import (
    ConfigError,
    DecodeError,
    Mirror,
    Parity,
    ReedSolomon,
    Scheme,
    Stripe,
    UnknownSchemeError,
    get_scheme,
)
from mpickpt.cli import main
from mpickpt.schemes import registry
from mpickpt.schemes.options import (
    add_scheme_options,
    describe_default,
    scheme_defaults,
    scheme_params,
)
from reference import encode

# lengths around the 8-byte alignment and the subsegment boundaries, plus empty and tiny
LENGTHS = [0, 1, 7, 8, 9, 63, 100, 1001, 4099]


def parity_configs():
    for group in range(1, 5):
        for backups in range(group + 1, group + 4):
            for subsegments in sorted({group, 3 * group, group * backups}):
                yield Parity(group=group, backups=backups, subsegments=subsegments)


def mirror_configs():
    for copies in range(1, 5):
        yield Mirror(copies=copies)


def stripe_configs():
    for backups in range(1, 5):
        for subsegments in (backups, backups + 1, 2 * backups + 1):
            yield Stripe(backups=backups, subsegments=subsegments)


def rs_configs():
    for group, parity in ((1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (4, 2), (2, 3), (3, 3), (2, 4)):
        for backups in sorted({group + parity, group + parity + 1}):
            if backups > 7:  # 2^backups loss patterns each: keep the sweep quick
                continue
            for subsegments in sorted({group, group * backups}):
                yield ReedSolomon(group, parity, backups, subsegments)


ALL_SCHEMES = [*parity_configs(), *mirror_configs(), *stripe_configs(), *rs_configs()]


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng([n, seed]).bytes(n)


def lost_pieces(scheme: Scheme, lost: tuple[int, ...]) -> set[str]:
    held = scheme.held()
    return {p.name for b in lost for p in held[b]}


def survives(scheme: Scheme, lost: tuple[int, ...]) -> bool:
    """The model: every stripe loses at most ``tolerance`` pieces."""
    gone = lost_pieces(scheme, lost)
    per_stripe = Counter(p.stripe for p in scheme.pieces() if p.name in gone)
    return max(per_stripe.values(), default=0) <= scheme.tolerance


def check_loss(scheme: Scheme, pieces: dict[str, np.ndarray], data: bytes, lost) -> bool:
    """Decode ``data`` without the pieces of the ``lost`` backups; return whether it decoded.

    Within tolerance it must decode; beyond, it either decodes the exact bytes or raises
    :class:`DecodeError`, never returns wrong bytes.
    """
    gone = lost_pieces(scheme, lost)
    available = {name: buf for name, buf in pieces.items() if name not in gone}
    try:
        out = scheme.decode(available, len(data))
    except DecodeError:
        assert len(lost) > scheme.tolerance, f"{scheme!r} failed to decode after losing {lost}"
        return False
    assert out.dtype == np.uint8
    assert out.tobytes() == data, f"{scheme!r} decoded wrong bytes after losing {lost}"
    return True


def check_every_loss(scheme: Scheme, lengths=LENGTHS) -> None:
    """The shared helper: every length, every subset of lost backups."""
    failed_at = set()
    for n in lengths:
        data = payload(n)
        pieces = encode(scheme, data)
        assert set(pieces) == {p.name for p in scheme.pieces()}
        assert {b.size for b in pieces.values()} == {scheme.piece_size(n)}
        for k in range(scheme.backups + 1):
            for lost in combinations(range(scheme.backups), k):
                ok = check_loss(scheme, pieces, data, lost)
                assert ok == survives(scheme, lost), f"{scheme!r} losing {lost}: decoded={ok}"
                if not ok:
                    failed_at.add(k)
    # the tolerance is tight: some loss of tolerance + 1 backups cannot be decoded
    if scheme.tolerance < scheme.backups:
        assert scheme.tolerance + 1 in failed_at, f"{scheme!r} tolerates more than it says"


@pytest.mark.parametrize("scheme", ALL_SCHEMES, ids=repr)
def test_every_loss_pattern(scheme):
    check_every_loss(scheme)


def test_sweep_covers_every_scheme():
    assert {type(s) for s in ALL_SCHEMES} == {Parity, Mirror, Stripe, ReedSolomon}


@pytest.mark.parametrize(
    ("scheme", "tolerance"),
    [
        (Parity(1, 2), 1),
        (Parity(3, 4), 1),
        (Parity(2, 5), 1),
        (Mirror(1), 0),
        (Mirror(4), 3),
        (Stripe(1), 0),
        (Stripe(4), 0),
        (ReedSolomon(3, 1, 4), 1),  # the same as parity's
        (ReedSolomon(4, 2, 6), 2),
        (ReedSolomon(2, 4), 4),
    ],
    ids=repr,
)
def test_tolerance(scheme, tolerance):
    assert scheme.tolerance == tolerance


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_config_length_and_loss(data):
    kind = data.draw(st.sampled_from(["parity", "mirror", "stripe", "rs"]))
    if kind == "parity":
        group = data.draw(st.integers(1, 6), label="group")
        backups = data.draw(st.integers(group + 1, group + 5), label="backups")
        stripes = data.draw(st.integers(1, 6), label="stripes")
        scheme: Scheme = Parity(group, backups, subsegments=group * stripes)
    elif kind == "rs":
        group = data.draw(st.integers(1, 6), label="group")
        parity = data.draw(st.integers(1, 4), label="parity")
        backups = data.draw(st.integers(group + parity, group + parity + 3), label="backups")
        stripes = data.draw(st.integers(1, 4), label="stripes")
        scheme = ReedSolomon(group, parity, backups, subsegments=group * stripes)
    elif kind == "mirror":
        scheme = Mirror(data.draw(st.integers(1, 6), label="copies"))
    else:
        backups = data.draw(st.integers(1, 8), label="backups")
        scheme = Stripe(backups, subsegments=data.draw(st.integers(backups, 3 * backups)))
    payload_bytes = data.draw(st.binary(max_size=3000), label="segment")
    lost = tuple(sorted(data.draw(st.sets(st.integers(0, scheme.backups - 1)), label="lost")))
    ok = check_loss(scheme, encode(scheme, payload_bytes), payload_bytes, lost)
    assert ok == survives(scheme, lost)


# -- buffers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme", [Parity(3, 4), Mirror(2), Stripe(3), ReedSolomon(3, 2)], ids=repr
)
def test_encode_and_decode_accept_every_buffer_type(scheme):
    arr = np.random.default_rng(1).random(125)  # 1000 bytes of float64
    raw = arr.tobytes()
    expected = encode(scheme, raw)
    for buf in (bytearray(raw), memoryview(raw), np.frombuffer(raw, np.uint8), arr):
        got = encode(scheme, buf)
        assert {k: v.tobytes() for k, v in got.items()} == {
            k: v.tobytes() for k, v in expected.items()
        }
    for convert in (bytes, bytearray, memoryview):
        pieces = {k: convert(v.tobytes()) for k, v in expected.items()}
        assert scheme.decode(pieces, len(raw)).tobytes() == raw


def test_encode_does_not_alias_the_segment():
    seg = bytearray(payload(64))
    pieces = encode(Stripe(1), seg)
    seg[:] = bytes(64)
    assert pieces["d0"].tobytes() == payload(64)


def test_decode_error_names_missing_subsegments():
    scheme = Parity(3, 4, subsegments=9)
    pieces = encode(scheme, payload(100))
    for name in ("d0", "d1"):
        del pieces[name]
    with pytest.raises(DecodeError, match=r"subsegments \[0, 1\] cannot be rebuilt"):
        scheme.decode(pieces, 100)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES, ids=repr)
def test_config_round_trip(scheme):
    config = scheme.get_config()
    assert json.loads(json.dumps(config)) == config
    again = get_scheme(json.loads(json.dumps(config)))
    assert type(again) is type(scheme)
    assert again == scheme
    assert hash(again) == hash(scheme)
    assert again.pieces() == scheme.pieces()
    assert get_scheme(scheme) is scheme
    assert get_scheme(config["id"], **{k: v for k, v in config.items() if k != "id"}) == scheme


def test_schemes_differ_by_config():
    assert Parity(2, 3) != Parity(2, 4)
    assert Mirror(2) != Stripe(2)
    assert Parity(3, 4) != "parity"


def test_defaults():
    assert Parity().get_config() == {"id": "parity", "group": 3, "backups": 4, "subsegments": 12}
    assert Stripe(3).subsegments == 3
    assert Mirror().copies == 1


@pytest.mark.parametrize(
    ("scheme", "overhead"),
    [
        (Parity(1, 2), 2.0),
        (Parity(2, 3), 1.5),
        (Parity(3, 4), 4 / 3),
        (Parity(4, 7), 1.25),
        (Mirror(1), 1.0),
        (Mirror(3), 3.0),
        (Stripe(1), 1.0),
        (Stripe(4, subsegments=9), 1.0),
    ],
    ids=repr,
)
def test_overhead(scheme, overhead):
    assert scheme.overhead == pytest.approx(overhead)


def test_overhead_matches_stored_bytes():
    scheme = Parity(3, 4)
    n = 12 * 800
    stored = sum(b.size for b in encode(scheme, payload(n)).values())
    assert stored == pytest.approx(scheme.overhead * n)


def test_parity_needs_backups_beyond_group():
    with pytest.raises(ConfigError, match=r"backups >= group\+1 = 4") as info:
        Parity(group=3, backups=3)
    assert "tolerance 0" in str(info.value)
    with pytest.raises(ConfigError, match="group=2"):  # the suggested fix
        get_scheme({"id": "parity", "group": 3, "backups": 3})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Parity(group=0), "group >= 1"),
        (lambda: Parity(3, 4, subsegments=10), "multiple of 3; use 12"),
        (lambda: Mirror(copies=0), "copies >= 1"),
        (lambda: Stripe(backups=0), "backups >= 1"),
        (lambda: Stripe(backups=3, subsegments=2), "subsegments >= backups"),
        (lambda: Parity.from_config({"id": "mirror", "copies": 2}), "not for scheme 'parity'"),
    ],
)
def test_bad_configs(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_unknown_config_key_is_config_error():
    with pytest.raises(ConfigError):
        get_scheme({"id": "parity", "grup": 2, "backups": 3})


@pytest.mark.parametrize("subsegments", [0, -3])
def test_parity_rejects_nonpositive_subsegments(subsegments):
    with pytest.raises(ConfigError):
        Parity(3, 4, subsegments=subsegments)


def test_unknown_scheme_lists_known_ids():
    with pytest.raises(UnknownSchemeError, match="'raid7'.*mirror, parity, rs, stripe") as info:
        get_scheme("raid7")
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownSchemeError, match="known schemes"):
        get_scheme({"group": 2})  # no id at all


# -- one set of defaults: the scheme classes', in the library, the command line and the docs --


@pytest.mark.parametrize("sid", sorted(registry))
def test_layout_without_parameters_shows_the_librarys_default_scheme(sid, capsys):
    assert main(["layout", "--scheme", sid, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"] == get_scheme(sid).get_config()


def test_options_given_reach_the_scheme_and_the_others_keep_its_defaults():
    parser = argparse.ArgumentParser()
    add_scheme_options(parser)
    args = parser.parse_args(["--scheme", "rs", "--group", "3", "--copies", "5"])
    assert scheme_params(args) == {"group": 3}  # --copies is mirror's
    assert get_scheme("rs", **scheme_params(args)) == ReedSolomon(group=3)
    assert scheme_params(parser.parse_args([])) == {}


def test_the_defaults_table_in_the_docs_is_the_scheme_classes():
    text = (Path(__file__).resolve().parents[1] / "docs" / "schemes.md").read_text()
    section = text.split("### Defaults", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| ([^|]+) \|$", section, re.M)
    documented = {(sid, name): value.strip() for sid, name, value in rows}
    expected = {
        (sid, name): describe_default(sid, name)
        for sid in registry
        for name in scheme_defaults(sid)
    }
    assert documented == expected
