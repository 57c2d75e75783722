"""The built-in output formats of ``cacheport args --format``: registered like any plugin's renderers."""

from __future__ import annotations

from cacheport import Renderer, hookimpl, render
from cacheport.plan import Plan
from cacheport.records import RenderOptions


def _args(plan: Plan, _options: RenderOptions) -> str:
    return render.args(plan) + "\n"


RENDERERS = [
    Renderer("args", "Flags on one line, for docker buildx build $(cacheport args) .", _args),
    Renderer("lines", "One flag per line, for mapfile -t flags < <(cacheport args --lines).",
             lambda plan, _o: render.lines(plan)),
    Renderer("json", "The plan as JSON, with every setting's source; secrets redacted.",
             lambda plan, _o: render.as_json(plan), secrets=False),
    Renderer("bake", "A file for docker buildx bake -f docker-bake.hcl -f FILE (cache per --target).",
             lambda plan, options: render.bake(plan, options.targets)),
    Renderer("buildctl", "--import-cache/--export-cache for buildctl build, one per line.",
             lambda plan, _o: render.buildctl(plan)),
    Renderer("github", "cache-from/cache-to outputs, appended to $GITHUB_OUTPUT (docker/build-push-action).",
             lambda plan, _o: render.github_output(plan), append_to="GITHUB_OUTPUT"),
    Renderer("dotenv", "A GitLab artifacts:reports:dotenv file (refuses plans that carry a secret).",
             lambda plan, _o: render.dotenv(plan)),
]


@hookimpl
def cacheport_renderers() -> list[Renderer]:
    return RENDERERS
