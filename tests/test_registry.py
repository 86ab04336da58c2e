"""The one registry: names, recorded arguments, project errors, entry-point plugins."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict, Field

from orchestrator._registry import Recorded, Registry
from orchestrator._validation import check_scalar
from orchestrator.cat import selection_rules, stopping_rules
from orchestrator.errors import ConfigError, ScenarioSpecError
from orchestrator.scoring.checks import check_kinds_registry

widgets: Registry[Widget] = Registry("widget", group="agentcat_test.widgets")


class Widget(Recorded):
    def __init__(self, size: int, *, colour: str = "red") -> None:
        self.size = check_scalar(size, "size", int, min_val=1, where=f"widget {self.name!r}")
        self.colour = colour


@widgets.register("plain")
class Plain(Widget):
    pass


class Gadget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    volume: float = Field(gt=0)


gadgets: Registry[Gadget] = Registry("gadget", key="kind", attr="registered_as")
gadgets.register("loud")(Gadget)


def test_objects_record_their_arguments_and_rebuild_equal() -> None:
    w = widgets.create({"rule": "plain", "args": {"size": 3}})
    assert w.spec() == {"rule": "plain", "args": {"size": 3, "colour": "red"}}
    assert widgets.create(w.spec()) == w and hash(widgets.create(w.spec())) == hash(w)
    assert widgets.create(w.spec()) != widgets.create({"rule": "plain", "args": {"size": 4}})
    assert widgets.create(w) is w  # an object passes through
    assert repr(w) == "Plain(size=3, colour='red')"


def test_a_pydantic_class_is_its_own_argument_model() -> None:
    g = gadgets.build("loud", {"volume": 2})
    assert isinstance(g, Gadget) and g.volume == 2.0 and Gadget.registered_as == "loud"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"^box 3 \(kind 'loud'\): volume: .*greater than 0"):
        gadgets.build("loud", {"volume": -1}, where="box 3")
    with pytest.raises(ConfigError, match=r"unknown field 'volum' \(did you mean 'volume'\?\)"):
        gadgets.build("loud", {"volum": 1})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("plian", r"unknown widget 'plian' \(did you mean 'plain'\?\)"),
        ({"rule": "plain", "args": {"sise": 1}}, r"has no argument 'sise' \(did you mean 'size'"),
        ({"rule": "plain"}, r"widget 'plain' needs argument\(s\) size"),
        ({"rule": "plain", "args": {"size": 0}}, r"widget 'plain': size must be an integer ≥ 1"),
        ({"rule": "plain", "args": {"size": 2, "colour": {1, 2}}}, r"plain JSON values"),
        ({"name": "plain"}, r"a widget spec is \{'rule': NAME, 'args'"),
        ({"rule": "plain", "args": [1]}, r"args must be a mapping"),
        (3.5, r"a widget is a name, a spec dict or a widget object; got float"),
    ],
)
def test_bad_names_and_arguments_are_project_errors(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        widgets.create(spec)  # type: ignore[arg-type]


def test_registration_rejects_bad_and_taken_names() -> None:
    with pytest.raises(ConfigError, match="snake_case"):
        widgets.register("Big-One")
    with pytest.raises(ConfigError, match="'plain' is already registered"):

        @widgets.register("plain")
        class Other(Widget):
            pass


def test_entry_point_plugins_are_imported_on_first_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real installed-distribution layout on sys.path: no mock of importlib.metadata."""
    (tmp_path / "agentcat_test_plugin.py").write_text(
        textwrap.dedent(
            """
            from agentcat_test_host import Widget, widgets

            @widgets.register("sprocket")
            class Sprocket(Widget):
                pass
            """
        )
    )
    dist = tmp_path / "agentcat_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: agentcat-test-plugin\n")
    (dist / "entry_points.txt").write_text(
        "[agentcat_test.widgets]\nsprocket = agentcat_test_plugin\n"
        "[agentcat_test.broken]\nbad = agentcat_test_missing_module\n"
    )
    # the plugin registers into a registry of its own, reached under a fixed module name
    plugged: Registry[Widget] = Registry("widget", group="agentcat_test.widgets")
    host = SimpleNamespace(widgets=plugged, Widget=Widget)
    monkeypatch.setitem(sys.modules, "agentcat_test_host", host)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "agentcat_test_plugin", raising=False)
    assert "sprocket" in plugged.names()
    assert plugged.create({"rule": "sprocket", "args": {"size": 2}}).spec() == {
        "rule": "sprocket",
        "args": {"size": 2, "colour": "red"},
    }
    broken: Registry[Widget] = Registry("gizmo", group="agentcat_test.broken")
    with pytest.raises(ConfigError, match=r"gizmo plugin 'bad' .* failed to load: ModuleNotFound"):
        broken.get("anything")


def test_every_registry_of_the_project_is_open_to_plugins() -> None:
    groups = {r.kind: r.group for r in (selection_rules, stopping_rules, check_kinds_registry)}
    assert groups == {
        "selection rule": "agentcat.selection_rules",
        "stopping rule": "agentcat.stopping_rules",
        "check kind": "agentcat.checks",
    }
    with pytest.raises(ScenarioSpecError, match=r"unknown check kind 'file_exist'"):
        check_kinds_registry.get("file_exist")
