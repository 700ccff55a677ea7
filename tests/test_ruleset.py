"""The rules file: defaults are docs/design.md §4; errors name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from siyu_stream.cli import main
from siyu_stream.errors import RulesError
from siyu_stream.ruleset import Rules, load_rules, parse_rules

EXAMPLE = Path(__file__).resolve().parent.parent / "rules.example.toml"


def test_defaults_are_the_design_numbers() -> None:
    r = Rules()
    assert r.spend_tier.thresholds_yuan == (5_000, 10_000, 50_000, 100_000)
    assert (r.reply_sla.minutes, r.welcome.due_minutes, r.silence.streak) == (30, 5, 5)
    assert (r.membership.days, r.membership.renewal_notice_days) == (365, 30)
    assert (r.dormant.days, r.invite_to_join.max_order_age_days) == (180, 7)
    assert (r.contact_policy.max_per_window, r.contact_policy.window_days) == (2, 7)
    assert r.contact_policy.holdout_percent == 0
    assert r.engine.timezone == "Asia/Shanghai"


def test_example_file_is_the_defaults() -> None:
    assert load_rules(EXAMPLE) == Rules()


def test_partial_file_overrides_only_its_keys() -> None:
    rules = parse_rules("[reply_sla]\nminutes = 15\n[gifts_yuan]\nreferral_reward = 150\n")
    assert rules.reply_sla.minutes == 15
    assert rules.gifts_yuan["referral_reward"] == 150
    assert rules.gifts_yuan["tier_5000"] == 200
    assert rules.silence == Rules().silence


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[silence]\nstreaks = 6\n", "r.toml:2: silence.streaks: unknown key"),
        ("\n[silence]\nstreak = 'x'\n", "r.toml:3: silence.streak: expected int"),
        ("[silence]\nstreak = 0\n", "r.toml:2: silence.streak: must be > 0"),
        ("[nope]\n", "r.toml:1: nope: unknown section"),
        ("[spend_tier]\nthresholds_yuan = [5, 1, 7, 9]\n", "spend_tier.thresholds_yuan"),
        ("[contact_policy]\nquiet_start = '25:00'\n", "r.toml:2: contact_policy.quiet_start"),
        ("[contact_policy]\nholdout_percent = 101\n", "contact_policy.holdout_percent"),
        ("[engine]\ntimezone = 'Mars/Olympus'\n", "r.toml:2: engine.timezone"),
        ("[membership]\nrenewal_notice_days = 400\n", "membership.renewal_notice_days"),
        ("[gifts_yuan]\ntier_5000 = 1.5\n", "r.toml:2: gifts_yuan.tier_5000"),
        ("silence = 3\n", "silence: expected a [table]"),
        ("[silence\n", "r.toml: invalid TOML"),
    ],
)
def test_errors_name_file_line_and_key(text: str, where: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.toml")
    assert where in str(info.value)


def test_check_rules_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[dormant]\ndays = 90\n")
    assert main(["check-rules", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[dormant]\ndays = -1\n")
    assert main(["check-rules", str(bad)]) == 2
    assert f"{bad}:2: dormant.days: must be > 0" in capsys.readouterr().err
    assert main(["check-rules", str(tmp_path / "missing.toml")]) == 2
