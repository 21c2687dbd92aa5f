"""The CLI and the Celery tasks read their settings from the environment, like in production."""

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cascade.config import Settings, get_settings
from cascade.context import Context
from feedback import tasks
from services.cli import main
from tests.feedback.factories import add_submissions
from tests.feedback.populations import population

pytestmark = pytest.mark.integration


@pytest.fixture
def env(settings: Settings, context: Context, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("CASCADE_DATABASE_URL", settings.database)
    monkeypatch.setenv("CASCADE_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    pop = population(3000, seed=5)
    add_submissions(context, s1=pop.s1, s2=pop.s2, label=pop.label, p=0.02)
    yield context
    get_settings.cache_clear()


def test_retune_and_thresholds_commands(env: Context) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["retune", "--no-activate", "--alpha", "0.02", "--by", "tester"])
    assert out.exit_code == 0, out.output
    assert "threshold set v1: certified; proposed" in out.output
    assert "cost per image" in out.output and "sent to humans" in out.output
    assert "audit images: 3000" in out.output
    assert "miss rate: 95% interval [" in out.output  # both estimates come with intervals
    assert "false-block rate: 95% interval [" in out.output
    listed = runner.invoke(main, ["thresholds", "list"])
    assert listed.exit_code == 0 and "proposed" in listed.output and "* " in listed.output
    assert runner.invoke(main, ["thresholds", "activate", "1", "--by", "tester"]).exit_code == 0
    shown = runner.invoke(main, ["thresholds", "show"])
    assert '"version": 1' in shown.output and '"activated_by": "tester"' in shown.output
    rolled = runner.invoke(main, ["thresholds", "rollback"])
    assert rolled.exit_code == 0 and "version 0 is active" in rolled.output
    again = runner.invoke(main, ["thresholds", "rollback"])
    assert again.exit_code != 0 and "nothing to roll back" in again.output
    missing = runner.invoke(main, ["thresholds", "show", "42"])
    assert missing.exit_code != 0 and "no threshold set version 42" in missing.output


def test_help_explains_the_commands() -> None:
    out = CliRunner().invoke(main, ["retune", "--help"])
    assert out.exit_code == 0 and "--alpha" in out.output and "certified" in out.output
    out = CliRunner().invoke(main, ["thresholds", "--help"])
    assert all(word in out.output for word in ("activate", "rollback", "list", "show"))


def test_celery_tasks_run_the_jobs(env: Context) -> None:
    result = tasks.retune.apply(kwargs={"reason": "test"}).get()
    assert result["version"] == 1 and result["certified"] and not result["activated"]
    assert tasks.check_errors.apply().get()[0]["kind"] in ("miss", "false_block")
    # No set certified and in force yet, and no scores in the PSI reference window.
    assert tasks.check_drift.apply().get() == {"guard": None, "psi": None}
    assert tasks.retune.name == "cascade.feedback.retune"
    assert tasks.check_drift.name == "cascade.feedback.check_drift"
    assert tasks.check_errors.name == "cascade.feedback.check_errors"
