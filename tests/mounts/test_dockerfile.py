"""cacheport.mounts.dockerfile: which cache mounts a build reaches, as BuildKit would mount them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheport.mounts import CacheMount
from cacheport.mounts.dockerfile import platform_args, read_mounts


def read(text: str, **kwargs: object) -> tuple[list[CacheMount], list[str]]:
    return read_mounts(textwrap.dedent(text).lstrip("\n"), **kwargs)  # type: ignore[arg-type]


def ids(text: str, **kwargs: object) -> list[str]:
    mounts, warnings = read(text, **kwargs)
    assert warnings == []
    return [m.id for m in mounts]


def test_a_mount_with_every_attribute() -> None:
    mounts, warnings = read("""
        FROM alpine AS deps
        RUN --mount=type=cache,id=pip,target=/root/.cache/pip,sharing=locked,uid=1000,gid=100,mode=0700 pip -V
        """)
    assert warnings == []
    assert mounts == [CacheMount(id="pip", target="/root/.cache/pip", sharing="locked", uid=1000, gid=100,
                                 mode=0o700, stage="deps", line=2, owner_given=True)]


def test_defaults_are_buildkits() -> None:
    """id: the cleaned target; sharing shared; root-owned; 0755; a stage without a name is its index."""
    mounts, _ = read("""
        FROM alpine
        RUN --mount=type=cache,target=//root/.cache/../.cache/go-build/ go build
        """)
    assert mounts == [CacheMount(id="/root/.cache/go-build", target="//root/.cache/../.cache/go-build/",
                                 sharing="shared", uid=0, gid=0, mode=0o755, stage="0", line=2,
                                 owner_given=False)]


def test_a_relative_target_is_under_the_workdir_and_its_id_as_written() -> None:
    mounts, warnings = read("""
        FROM alpine AS base
        RUN --mount=type=cache,target=.cache/a true
        WORKDIR /src
        ARG SUB=app
        WORKDIR $SUB
        RUN --mount=type=cache,target=.cache/b true
        FROM base
        WORKDIR ../lib
        RUN --mount=type=cache,target=./c/ true
        """)
    assert warnings == []
    assert [(m.id, m.target) for m in mounts] == [(".cache/a", ".cache/a"), (".cache/b", "/src/app/.cache/b"),
                                                 ("c", "/src/lib/c")]


def test_target_aliases_quotes_and_key_case() -> None:
    assert ids("""
        FROM alpine
        RUN --mount=type=cache,dst=/a --mount=TYPE=cache,Destination=/b --mount='type=cache,target=/c,"id=x,y"' true
        RUN --mount=type=cache,target=/d,ro --mount=type=cache,target=/e,readonly=true true
        """) == ["/a", "/b", "x,y", "/d", "/e"]


def test_other_mount_types_and_other_flags_are_not_cache_mounts() -> None:
    assert ids("""
        FROM alpine
        RUN --network=none --mount=type=bind,source=$UNSET,target=/x --mount=target=/y --mount=type=secret,id=s \\
            --mount=type=tmpfs,target=/t --mount=type=ssh --mount=type=cache,target=/c true
        """) == ["/c"]


def test_heredocs_are_not_read_as_instructions() -> None:
    mounts, warnings = read("""
        # syntax=docker/dockerfile:1
        FROM alpine
        RUN --mount=type=cache,target=/var/cache/apt <<EOT bash
        set -e
        RUN --mount=type=cache,target=/not-a-mount echo
        apt-get update
        EOT
        COPY <<-EOF /etc/conf
        \tRUN --mount=type=cache,target=/nor-this
        \tEOF
        RUN --mount=type=cache,target=/after <<A <<B
        one
        A
        two
        B
        """)
    assert warnings == []
    assert [(m.id, m.line) for m in mounts] == [("/var/cache/apt", 3), ("/after", 11)]


def test_continuations_and_comments_inside_them() -> None:
    mounts, warnings = read("""
        FROM alpine
        RUN \\
            --mount=type=cache,target=/one \\
        # a comment between continued lines
            --mount=type=cache,target=/two \\

            pip install -r requirements.txt # not a comment in a shell line
        RUN --mount=type=cache,target=/three true
        """)
    assert [(m.id, m.line) for m in mounts] == [("/one", 2), ("/two", 2), ("/three", 8)]
    assert warnings == []


def test_the_escape_directive() -> None:
    mounts, warnings = read("""
        # escape=`
        FROM mcr.microsoft.com/windows/servercore
        RUN --mount=type=cache,target=C:\\cache `
            --mount=type=cache,target=/x `
            dir
        """)
    assert warnings == []
    assert [(m.id, m.target, m.line) for m in mounts] == [("C:\\cache", "C:\\cache", 3), ("/x", "/x", 3)]


class TestVariables:
    def test_global_args_reach_a_stage_only_when_declared_again(self) -> None:
        mounts, warnings = read("""
            ARG TOOL=pip
            FROM alpine
            RUN --mount=type=cache,id=$TOOL,target=/a true
            ARG TOOL
            RUN --mount=type=cache,id=${TOOL}-cache,target=/b true
            """)
        assert [m.id for m in mounts] == ["pip-cache"]
        assert warnings == ["Dockerfile:3: cache mount skipped: $TOOL has no value (no ARG default, ENV or --build-arg)"]

    def test_build_args_win_over_defaults_but_need_a_declaration(self) -> None:
        text = """
            ARG GLOBAL=g
            FROM alpine
            ARG GLOBAL
            ARG LOCAL=l
            ARG DERIVED=${LOCAL}-d
            RUN --mount=type=cache,id=$GLOBAL.$LOCAL.$DERIVED,target=/a true
            RUN --mount=type=cache,id=${UNDECLARED:-none},target=/b true
            """
        assert ids(text) == ["g.l.l-d", "none"]
        assert ids(text, build_args={"GLOBAL": "G", "LOCAL": "L", "UNDECLARED": "u"}) == ["G.L.L-d", "none"]

    def test_defaults_alternatives_and_env(self) -> None:
        assert ids("""
            FROM alpine AS base
            ENV CACHE_ROOT=/cache LANG_NAME="py thon"
            FROM base
            ARG SET=x
            ENV CACHE_ROOT=${CACHE_ROOT}/sub
            RUN --mount=type=cache,id=${MISSING:-dflt},target=$CACHE_ROOT/a true
            RUN --mount=type=cache,id=${SET:+alt},target=/b true
            RUN --mount=type=cache,id=${LANG_NAME},target=/c true
            """) == ["dflt", "alt", "py thon"]

    def test_an_env_hides_an_arg_of_the_same_name(self) -> None:
        assert ids("""
            FROM alpine
            ARG WHERE=/from-arg
            ENV WHERE=/from-env
            RUN --mount=type=cache,target=$WHERE true
            """, build_args={"WHERE": "/from-build-arg"}) == ["/from-env"]

    def test_an_unresolved_target_skips_only_that_mount(self) -> None:
        mounts, warnings = read("""
            FROM alpine
            RUN --mount=type=cache,target=${HOME}/.cache --mount=type=cache,target=/ok true
            """, path="sub/Dockerfile.ci")
        assert [m.id for m in mounts] == ["/ok"]
        assert warnings == ["sub/Dockerfile.ci:2: cache mount skipped: $HOME has no value (no ARG default, ENV or "
                            "--build-arg)"]

    def test_platform_args(self) -> None:
        text = """
            FROM --platform=$BUILDPLATFORM alpine
            ARG TARGETARCH TARGETVARIANT
            RUN --mount=type=cache,id=apt-$TARGETARCH${TARGETVARIANT:+-$TARGETVARIANT},target=/var/cache/apt true
            """
        assert platform_args("linux/arm/v7") == {"TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux",
                                                 "TARGETARCH": "arm", "TARGETVARIANT": "v7"}
        assert ids(text, build_args=platform_args("linux/arm/v7")) == ["apt-arm-v7"]
        assert ids(text, build_args=platform_args("linux/amd64")) == ["apt-amd64"]
        assert read(text)[1] == ["Dockerfile:3: cache mount skipped: $TARGETARCH has no value (no ARG default, ENV "
                                 "or --build-arg)"]


class TestStages:
    TEXT = """
        ARG BASE=builder
        FROM alpine AS tools
        RUN --mount=type=cache,target=/tools true
        FROM alpine AS builder
        RUN --mount=type=cache,target=/builder true
        FROM alpine AS unused
        RUN --mount=type=cache,target=/unused true
        FROM alpine AS assets
        RUN --mount=type=cache,target=/assets true
        FROM alpine AS mounted
        RUN --mount=type=cache,target=/mounted true
        FROM ${BASE} AS app
        COPY --from=assets /a /a
        COPY --from=0 /t /t
        COPY --from=docker.io/library/busybox /bin/sh /sh
        RUN --mount=type=bind,from=mounted,target=/m --mount=type=cache,target=/app true
        FROM scratch AS final
        COPY --from=app / /
        """

    def test_the_last_stage_and_all_it_needs(self) -> None:
        assert ids(self.TEXT) == ["/tools", "/builder", "/assets", "/mounted", "/app"]

    def test_a_target_and_what_it_needs(self) -> None:
        assert ids(self.TEXT, target="BUILDER") == ["/builder"]
        assert ids(self.TEXT, target="unused") == ["/unused"]
        assert ids(self.TEXT, target="app", build_args={"BASE": "unused"}) == \
            ["/tools", "/unused", "/assets", "/mounted", "/app"]

    def test_an_unknown_target(self) -> None:
        mounts, warnings = read(self.TEXT, target="nope")
        assert mounts == []
        assert warnings == ["Dockerfile: no stage named 'nope' (stages: tools, builder, unused, assets, mounted, "
                            "app, final)"]

    def test_a_cache_mount_from_a_stage_is_left_alone_but_reaches_it(self) -> None:
        assert ids("""
            FROM alpine AS seed
            RUN --mount=type=cache,target=/seed true
            FROM alpine
            RUN --mount=type=cache,from=seed,source=/s,target=/prefilled --mount=type=cache,target=/own true
            RUN --mount=type=cache,from=busybox,target=/from-image true
            """) == ["/seed", "/own"]

    def test_stages_that_refer_to_each_other_in_a_circle_end(self) -> None:
        assert ids("""
            FROM b AS a
            RUN --mount=type=cache,target=/a true
            FROM a AS b
            COPY --from=b /x /x
            RUN --mount=type=cache,target=/b true
            """) == ["/a", "/b"]

    def test_no_from(self) -> None:
        assert read("ARG X=1\n") == ([], ["Dockerfile:1: no FROM: no stage to build"])


def test_one_mount_per_id_and_a_warning_when_owners_differ() -> None:
    mounts, warnings = read("""
        FROM alpine AS a
        RUN --mount=type=cache,id=go,target=/root/.cache/go-build true
        FROM a
        RUN --mount=type=cache,id=go,target=/go-cache,sharing=locked true
        RUN --mount=type=cache,id=go,target=/root/.cache/go-build,uid=1000,mode=0777 true
        """)
    assert mounts == [CacheMount(id="go", target="/root/.cache/go-build", stage="a", line=2, owner_given=False)]
    assert warnings == ["Dockerfile:5: cache mount 'go' is also on line 2 with another owner or mode; kept as line 2 "
                        "has it (uid=0, gid=0, mode=755)"]


@pytest.mark.parametrize(("flag", "given"), [
    ("type=cache,target=/x", False),
    ("type=cache,target=/x,uid=0,gid=0,mode=0755", True),  # BuildKit's defaults, written out: another mount
    ("type=cache,target=/x,MODE=0755", True),
    ("type=cache,target=/x,gid=0", True),
])
def test_whether_the_flag_gives_an_owner_or_mode_is_kept(flag: str, given: bool) -> None:
    """BuildKit makes a mount whose flag says uid, gid or mode another mount than one of the same id without
    them, even at their defaults: the helper builds must repeat exactly what the Dockerfile says."""
    mounts, _ = read(f"""
        FROM alpine
        RUN --mount={flag} true
        """)
    assert [(m.owner_given, m.sets_owner) for m in mounts] == [(given, given)]


@pytest.mark.parametrize(("flag", "why"), [
    ("type=cache,target=/x,sharing=sometimes", "sharing=sometimes (allowed: shared, private, locked)"),
    ("type=cache,target=/x,uid=-1", "uid=-1 is not a number"),
    ("type=cache,target=/x,gid=4294967296", "gid=4294967296 is not a number"),
    ("type=cache,target=/x,mode=0o755", "mode=0o755 is not an octal number"),
    ("type=cache,target=/x,mode=0799", "mode=0799 is not an octal number"),
    ("type=cache,id=x", "a cache mount needs a target"),
    ("type=cache,target=/x,colour=red", "unknown key 'colour'"),
    ("type=cache,target=/x,shared", "'shared' must be a key=value pair"),
    ("'type=cache,target=/x,\"id=a\"b'", "not CSV"),
    ("type=volume,target=/x", "unknown type 'volume' (allowed: bind, cache, tmpfs, secret, ssh)"),
    ("type=cache,target=/x,from=$STAGE", "'from' takes no variables"),
    ("type=cache,target=${X", "missing '}'"),
])
def test_a_malformed_mount_is_skipped_with_a_warning(flag: str, why: str) -> None:
    mounts, warnings = read(f"""
        FROM alpine
        RUN --mount=type=cache,target=/before true
        RUN --mount={flag} --mount=type=cache,target=/beside true
        """)
    assert [m.id for m in mounts] == ["/before", "/beside"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Dockerfile:3: --mount={flag.strip(chr(39))} skipped: ")
    assert why in warnings[0]


def test_a_dockerfile_that_cannot_be_parsed_is_one_warning() -> None:
    for text, line, why in [
        ("FROM alpine\nRUN <<EOT\nnever ended\n", 2, "unterminated heredoc"),
        ("FROM alpine\nENV A=1 B\n", 2, "can't find = in \"B\""),
        ("# escape=x\nFROM alpine\n", 1, "invalid escape token"),
        ("FROM alpine\nFETCH x\n", 2, "unknown instruction: FETCH"),
    ]:
        mounts, warnings = read_mounts(text, path="ci/Dockerfile")
        assert mounts == []
        assert len(warnings) == 1 and warnings[0].startswith(f"ci/Dockerfile:{line}: cannot read the Dockerfile (")
        assert why in warnings[0] and warnings[0].endswith("; its cache mounts are left out")


def test_the_parser_is_imported_only_when_a_dockerfile_is_read() -> None:
    code = ("import sys, cacheport.mounts.dockerfile as d; print('e2b_dockerfile_utils' in sys.modules); "
            "d.read_mounts('FROM a'); print('e2b_dockerfile_utils' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


# Properties -------------------------------------------------------------------------------------------------

WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
PATH = st.lists(WORD.filter(lambda w: w not in (".", "..")), min_size=1, max_size=4).map(lambda p: "/" + "/".join(p))


@attrs.frozen
class Spec:
    """A mount as generated, and how it is written."""

    mount: CacheMount
    via_arg: bool  # the id comes from an ARG (half of them from --build-arg)
    from_build_arg: bool
    quoted: bool
    key: str  # target, dst or destination


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    mount = CacheMount(id=draw(WORD), target=draw(PATH), sharing=draw(st.sampled_from(("shared", "private", "locked"))),
                       uid=draw(st.integers(0, 65535)), gid=draw(st.integers(0, 65535)),
                       mode=draw(st.integers(0, 0o7777)), owner_given=True)  # the Dockerfile below gives all three
    return Spec(mount, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()),
                draw(st.sampled_from(("target", "dst", "destination"))))


def write(stages: list[list[Spec]], layout: list[int]) -> tuple[str, dict[str, str]]:
    """A Dockerfile whose stages each build on the one before, and the build args it needs; ``layout`` picks, per
    mount, continuations, comments and a heredoc."""
    lines, build_args, n = ["# syntax=docker/dockerfile:1"], {}, 0
    for s, specs_ in enumerate(stages):
        lines.append(f"FROM {'alpine' if s == 0 else f'stage{s - 1}'} AS stage{s}")
        for spec in specs_:
            m, style = spec.mount, layout[n % len(layout)]
            ident = m.id
            if spec.via_arg:
                name = f"ID_{n}"
                if spec.from_build_arg:
                    lines.append(f"ARG {name}")
                    build_args[name] = m.id
                else:
                    lines.append(f"ARG {name}={m.id}")
                ident = "${" + name + "}" if n % 2 else "$" + name
            fields = (f"type=cache,id={ident},{spec.key}={m.target},sharing={m.sharing},uid={m.uid},gid={m.gid},"
                      f"mode={m.mode:04o}")
            flag = f'--mount="{fields}"' if spec.quoted else f"--mount={fields}"
            if style == 0:
                lines.append(f"RUN {flag} true")
            elif style == 1:
                lines += ["RUN \\", "# comment", f"  {flag} \\", "  --mount=type=bind,target=/b \\", "  true"]
            else:
                lines += [f"RUN {flag} <<EOT", f"RUN --mount=type=cache,target=/heredoc{n} echo", "EOT"]
            n += 1
    return "\n".join(lines) + "\n", build_args


@settings(max_examples=150)
@given(st.lists(st.lists(specs(), max_size=4), min_size=1, max_size=4), st.lists(st.integers(0, 2), min_size=1))
def test_generated_dockerfiles_give_back_their_mounts(stages: list[list[Spec]], layout: list[int]) -> None:
    text, build_args = write(stages, layout)
    mounts, warnings = read_mounts(text, build_args=build_args)
    expected: dict[str, CacheMount] = {}
    clashes = 0
    for s, specs_ in enumerate(stages):
        for spec in specs_:
            first = expected.setdefault(spec.mount.id, attrs.evolve(spec.mount, stage=f"stage{s}"))
            clashes += (first.uid, first.gid, first.mode) != (spec.mount.uid, spec.mount.gid, spec.mount.mode)
    assert [attrs.evolve(m, line=0) for m in mounts] == list(expected.values())
    assert all(text.splitlines()[m.line - 1].startswith("RUN ") for m in mounts)
    assert len(warnings) == clashes
    # a target picks its stage and those before it
    last = len(stages) - 1
    assert read_mounts(text, build_args=build_args, target=f"STAGE{last}")[0] == mounts


TOKENS = st.sampled_from([
    "FROM ", "RUN ", "ARG ", "ENV ", "COPY ", " AS ", "--mount=", "--from=", "type=cache", "type=bind", ",", "=",
    "target=", "id=", "from=", "uid=", "mode=", "sharing=", "$", "${", "}", ":-", "\"", "'", "\\\n", "`", "\n",
    "<<EOT", "EOT", "<<-", "# escape=`\n", "# syntax=x\n", "#", " ", "\t", "/x", "a", "0", "[\"", "\"]",
])


@settings(max_examples=300)
@given(st.one_of(st.text(), st.lists(TOKENS).map("".join)), st.sampled_from([None, "a", "0"]),
       st.dictionaries(st.sampled_from(["X", "a", "ID"]), st.text(max_size=5), max_size=2))
def test_any_text_gives_warnings_never_an_exception(text: str, target: str | None, build_args: dict[str, str]) -> None:
    mounts, warnings = read_mounts(text, path="df", target=target, build_args=build_args)
    assert all(isinstance(m, CacheMount) for m in mounts)
    assert len({m.id for m in mounts}) == len(mounts)
    assert all(w.startswith("df") and "\n" not in w for w in warnings)


def test_warnings_show_the_dockerfiles_control_characters_escaped() -> None:
    for text in ("FROM a\nRUN --mount=type=cache,id=${X\x1b[2J},target=/c true\n",
                 "FROM a\n\x1b]0;title\x07BAD x\n"):
        mounts, warnings = read_mounts(text, path="Dockerfile")
        assert mounts == [] and len(warnings) == 1
        assert warnings[0].isprintable() and "\\x1b" in warnings[0], warnings
