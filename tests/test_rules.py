"""Pure rule tests: one scenario per rule and per edge case of docs/design.md §4."""

from __future__ import annotations

import dataclasses

from scenario import Scenario, t

from siyu_stream.core import stored
from siyu_stream.core.clock import DAY, MINUTE, format_rfc3339
from siyu_stream.core.events import Join, Order
from siyu_stream.core.rules import apply_event
from siyu_stream.core.ruleset import ContactPolicy, Engine, Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.core.step import LATEST_DUE


def test_first_event_makes_customer_known_with_layer_change() -> None:
    s = Scenario()
    s.chat("2026-03-01 10:00", "outbound", staff_id="s1")
    assert s.changes("layer") == [(None, "A1")]


# ---------------------------------------------------------------- welcome


def test_welcome_on_first_join_assigned_to_joining_staff() -> None:
    s = Scenario()
    s.join("2026-03-01 23:50", "wecom", source="package_card", staff_id="s7")
    [welcome] = s.reminders("welcome_survey")
    assert welcome.detail["assignee"] == "s7"
    assert welcome.detail["priority"] == "high"
    # a staff task, not customer-facing: quiet hours do not move it, and its time is a
    # deadline (sent at once), not a time to wait for
    assert welcome.detail["deadline"] == format_rfc3339(t("2026-03-01 23:55"))
    assert welcome.detail["not_before"] is None
    assert s.changes("layer") == [(None, "A2")]


def test_second_carrier_is_not_a_new_welcome() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00", "wecom", staff_id="s7")
    s.join("2026-03-02 10:00", "group")
    assert len(s.reminders("welcome_survey")) == 1
    assert set(s.state().carriers) == {"wecom", "group"}


def test_rejoin_after_leave_welcomes_again_and_leaves_lost() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00", "wecom", staff_id="s7")
    s.leave("2026-03-05 10:00", "wecom")
    assert s.changes("health") == [("active", "lost")]
    s.join("2026-03-09 10:00", "wechat", staff_id="s8")
    assert [a.detail["assignee"] for a in s.reminders("welcome_survey")] == ["s7", "s8"]
    assert s.changes("health") == [("active", "lost"), ("lost", "active")]


# ---------------------------------------------------------------- reply_sla


def test_unanswered_inbound_raises_one_reply_overdue_at_the_deadline() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00", staff_id="s7")
    s.chat("2026-03-01 10:00", "outbound", staff_id="s9")
    s.chat("2026-03-01 11:00", "inbound", channel="wechat")
    s.chat("2026-03-01 11:10", "inbound")  # same waiting episode
    s.until("2026-03-01 13:00")
    [overdue] = s.reminders("reply_overdue")
    assert overdue.detail["assignee"] == "s9"  # the last staff who talked with the customer
    assert overdue.detail["channel"] == "wechat"
    assert overdue.detail["deadline"] == format_rfc3339(t("2026-03-01 11:30"))
    assert overdue.detail["not_before"] is None
    assert overdue.occurred_at == t("2026-03-01 11:30")


def test_reply_within_sla_ends_the_episode() -> None:
    s = Scenario()
    s.chat("2026-03-01 11:00", "inbound")
    s.chat("2026-03-01 11:29", "outbound", staff_id="s1")
    s.until("2026-03-02 00:00")
    assert s.reminders("reply_overdue") == []


def test_new_episode_after_a_reply_gets_its_own_reminder() -> None:
    s = Scenario()
    s.chat("2026-03-01 11:00", "inbound")
    s.chat("2026-03-01 12:00", "outbound", staff_id="s1")  # late reply ends episode 1
    s.chat("2026-03-01 13:00", "inbound")
    s.until("2026-03-01 14:00")
    assert [a.occurred_at for a in s.reminders("reply_overdue")] == [
        t("2026-03-01 11:30"),
        t("2026-03-01 13:30"),
    ]


def test_timer_fires_before_a_later_event_is_handled() -> None:
    s = Scenario()
    s.chat("2026-03-01 11:00", "inbound")
    s.chat("2026-03-01 11:45", "outbound", staff_id="s1")  # after the deadline: too late
    assert len(s.reminders("reply_overdue")) == 1


def test_out_of_order_inbound_already_answered_starts_no_episode() -> None:
    s = Scenario()
    s.chat("2026-03-01 11:05", "outbound", staff_id="s1")
    s.chat("2026-03-01 11:00", "inbound")  # arrives late, was answered at 11:05
    s.until("2026-03-02 00:00")
    assert s.reminders("reply_overdue") == []


# ---------------------------------------------------------------- spend_tier


def test_one_order_crossing_several_thresholds_grants_each_gift_and_one_tier_change() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "4800.00")
    s.order("2026-03-02 10:00", "50500")
    assert s.gifts() == ["tier_5000", "tier_10000", "tier_50000"]
    assert s.changes("tier") == [("none", "platinum")]
    gift = s.of("gift", code="tier_5000")[0]
    assert gift.detail["value"] == 20_000  # 200 yuan in fen
    assert "4,800.00 → 55,300.00" in gift.because and "5,000" in gift.because


def test_refund_then_recross_grants_nothing_new() -> None:
    s = Scenario()
    first = s.order("2026-03-01 10:00", "5200", order_id="A")
    s.refund("2026-03-02 10:00", "A", "1000.00")
    s.order("2026-03-03 10:00", "2000", order_id="B")
    assert first
    assert s.gifts() == ["tier_5000"]
    assert s.changes("tier") == [("none", "silver"), ("silver", "none"), ("none", "silver")]
    assert s.state().spend_fen == 620_000


def test_exact_threshold_counts_as_crossed() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "5000.00")
    assert s.gifts() == ["tier_5000"]


def test_refund_never_exceeds_what_was_paid_and_spend_never_negative() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "100", order_id="A")
    s.refund("2026-03-02 10:00", "A", "80")
    s.refund("2026-03-03 10:00", "A", "80")  # only 20 left on A
    assert s.state().spend_fen == 0
    s.refund("2026-03-04 10:00", "UNKNOWN", "50")
    assert s.state().spend_fen == 0


def test_membership_fee_is_not_spend() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "1000", kind="membership")
    st = s.state()
    assert (st.spend_fen, st.orders, st.tier) == (0, 0, "none")


# ---------------------------------------------------------------- membership


def test_membership_first_purchase_gift_renewal_reminder_and_expiry() -> None:
    s = Scenario()
    s.join("2026-01-01 10:00", staff_id="s7")
    s.order("2026-01-10 10:00", "1000", kind="membership", order_id="M1")
    assert s.gifts() == ["member_welcome_pack"]
    assert s.changes("membership") == [("none", "active")]
    s.until("2027-01-11 00:00")
    [renewal] = s.reminders("membership_renewal")
    # expiry 2027-01-10 10:00 local; notice 30 days before
    assert renewal.occurred_at == t("2026-12-11 10:00")
    assert renewal.detail["channel"] == "wecom"
    assert s.changes("membership") == [("none", "active"), ("active", "expired")]
    assert s.of("change", field="membership")[-1].occurred_at == t("2027-01-10 10:00")


def test_renewal_extends_from_the_later_of_now_and_expiry_without_second_pack() -> None:
    s = Scenario()
    s.order("2026-01-10 10:00", "1000", kind="membership")
    s.order("2026-06-01 10:00", "1000", kind="membership")  # early renewal
    assert s.state().member_until == t("2028-01-10 10:00")
    s.until("2027-02-01 00:00")
    assert s.reminders("membership_renewal") == []  # the old notice was rescheduled
    assert s.changes("membership") == [("none", "active")]
    s.until("2028-01-10 10:00")
    assert s.changes("membership")[-1] == ("active", "expired")
    s.order("2028-03-01 10:00", "1000", kind="membership")  # lapsed member renews from now
    assert s.state().member_until == t("2029-03-01 10:00")
    assert s.changes("membership")[-1] == ("expired", "active")
    assert s.gifts() == ["member_welcome_pack"]


# ---------------------------------------------------------------- third_order


def test_third_paid_purchase_is_rewarded_once() -> None:
    s = Scenario()
    for day in (1, 2, 3, 4, 5):
        s.order(f"2026-03-0{day} 10:00", "10")
    s.order("2026-03-06 10:00", "10", kind="membership")
    assert s.gifts().count("third_order_reward") == 1
    reward = s.of("gift", code="third_order_reward")[0]
    assert reward.occurred_at == t("2026-03-03 10:00")


# ---------------------------------------------------------------- referral


def test_referrer_rewarded_when_referred_customer_first_buys() -> None:
    s = Scenario()
    s.chat("2026-03-01 09:00", "inbound", customer_id="R")
    s.join("2026-03-01 10:00", "wecom", customer_id="N", source="referral", referrer_id="R")
    s.order("2026-03-02 10:00", "99", customer_id="N", event_id="N-order-1")
    s.order("2026-03-03 10:00", "99", customer_id="N")
    [reward] = s.of("gift", "R")
    assert reward.detail["code"] == "referral_reward"
    assert reward.cause_event_id == "N-order-1"
    assert s.state("R").referrals == 1
    assert s.changes("layer", "R")[-1] == ("A3", "A5")
    assert s.of("gift", "N", code="referral_reward") == []


def test_referrer_unknown_to_the_engine_is_created() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00", customer_id="N", referrer_id="R")
    s.order("2026-03-02 10:00", "99", customer_id="N")
    assert s.changes("layer", "R") == [(None, "A5")]
    assert s.gifts("R") == ["referral_reward"]


def test_self_referral_is_ignored() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00", customer_id="N", referrer_id="N")
    s.order("2026-03-02 10:00", "99", customer_id="N")
    assert s.of("gift", code="referral_reward") == []
    assert s.state("N").referrer_id is None


def test_each_referred_customer_counts_once() -> None:
    s = Scenario()
    for n in ("N1", "N2"):
        s.join("2026-03-01 10:00", customer_id=n, referrer_id="R")
        s.order("2026-03-02 10:00", "99", customer_id=n)
        s.order("2026-03-05 10:00", "99", customer_id=n)
    assert s.gifts("R") == ["referral_reward", "referral_reward"]
    assert s.state("R").referrals == 2


# ---------------------------------------------------------------- invite_to_join


def test_fresh_order_outside_the_pool_gets_one_invite_per_30_days() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "99")
    s.order("2026-03-10 10:00", "99")
    s.order("2026-04-01 10:00", "99")
    invites = s.reminders("invite_join")
    assert [a.occurred_at for a in invites] == [t("2026-03-01 10:00"), t("2026-04-01 10:00")]
    assert invites[0].detail["channel"] == "package_card"


def test_stale_order_gets_no_invite() -> None:
    s = Scenario()
    s.chat("2026-03-20 10:00", "outbound", customer_id="other")  # engine clock: 03-20
    s.order("2026-03-12 10:00", "99")  # 8 days old on the engine clock
    s.order("2026-03-13 11:00", "99")  # 6.96 days old
    assert [a.occurred_at for a in s.reminders("invite_join")] == [t("2026-03-13 11:00")]


def test_pool_member_gets_no_invite() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00")
    s.order("2026-03-02 10:00", "99")
    assert s.reminders("invite_join") == []


# ---------------------------------------------------------------- repurchase_due


def test_repurchase_followup_after_default_cycle_then_at_risk_and_vip_call() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00", staff_id="s7")
    s.order("2026-03-01 10:00", "12000")  # gold, < 2 orders: cycle 30 days
    s.until("2026-06-01 00:00")
    [followup] = s.reminders("repurchase_followup")
    assert followup.occurred_at == t("2026-03-31 10:00")
    [call] = s.reminders("vip_call")
    assert call.occurred_at == t("2026-04-30 10:00")
    assert call.detail["channel"] == "phone"
    assert s.changes("health") == [("active", "at_risk")]


def test_vip_call_also_for_a_customer_already_at_risk() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00", staff_id="s7")
    s.order("2026-03-01 10:00", "12000")  # gold, cycle 30 days: at risk on 04-30
    for n in range(5):  # five outbound in a row: at risk on 03-06, before the timer
        s.chat(f"2026-03-0{n + 2} 10:00", "outbound", staff_id="s7")
    s.until("2026-06-01 00:00")
    assert s.changes("health") == [("active", "at_risk")]  # once, by silence
    [call] = s.reminders("vip_call")
    assert call.occurred_at == t("2026-04-30 10:00")


def test_cycle_is_median_of_recent_gaps_with_floor() -> None:
    s = Scenario()
    s.join("2026-01-01 09:00")
    for day in ("01-01", "01-21", "02-08", "02-26", "03-20"):  # gaps 20, 18, 18, 22 days
        s.order(f"2026-{day} 12:00", "10")
    s.until("2026-05-01 00:00")
    followups = [a.occurred_at for a in s.reminders("repurchase_followup")]
    # 02-26 + median(20, 18, 18) = 03-16 fired before the 03-20 order; then median 19 days
    assert followups == [t("2026-03-16 12:00"), t("2026-04-08 12:00")]
    assert s.reminders("vip_call") == []  # tier none
    s2 = Scenario()
    s2.join("2026-01-01 09:00")
    s2.order("2026-01-01 12:00", "10")
    s2.order("2026-01-02 12:00", "10")  # 1-day gap -> floor of 7 days
    s2.until("2026-01-20 00:00")
    assert s2.reminders("repurchase_followup")[0].occurred_at == t("2026-01-09 12:00")


def test_new_purchase_cancels_the_followup() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00")
    s.order("2026-03-01 12:00", "10")
    s.order("2026-03-20 12:00", "10")
    s.until("2026-04-01 00:00")
    assert s.state().timers["repurchase"].due == t("2026-04-08 12:00")
    # the first order's 30-day follow-up (03-31) never fires; the new cycle is 19 days
    assert [a.occurred_at for a in s.reminders("repurchase_followup")] == []
    s.until("2026-04-08 12:00")
    assert [a.occurred_at for a in s.reminders("repurchase_followup")] == [t("2026-04-08 12:00")]


def test_followup_only_for_pool_members_but_health_still_moves() -> None:
    s = Scenario()
    s.order("2026-03-01 12:00", "10")
    s.until("2026-06-01 00:00")
    assert s.reminders("repurchase_followup") == []
    assert s.changes("health") == [("active", "at_risk")]


# ---------------------------------------------------------------- silence


def test_five_outbound_in_a_row_marks_at_risk_and_reengages_once() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00", "wechat")
    for n in range(7):
        s.chat(f"2026-03-0{n + 2} 10:00", "outbound", staff_id="s1")
    assert s.changes("health") == [("active", "at_risk")]
    [reengage] = s.reminders("reengage")
    assert reengage.occurred_at == t("2026-03-06 10:00")
    assert reengage.detail["channel"] == "wechat"


def test_inbound_resets_the_streak_and_heals() -> None:
    s = Scenario()
    for n in range(4):
        s.chat(f"2026-03-0{n + 1} 10:00", "outbound", staff_id="s1")
    s.chat("2026-03-05 10:00", "inbound")
    s.chat("2026-03-05 10:05", "outbound", staff_id="s1")
    assert s.state().outbound_streak == 1
    assert s.reminders("reengage") == []
    for n in range(4):
        s.chat(f"2026-03-0{n + 6} 10:00", "outbound", staff_id="s1")
    assert len(s.reminders("reengage")) == 1
    s.chat("2026-03-20 10:00", "inbound")
    assert s.changes("health") == [("active", "at_risk"), ("at_risk", "active")]


# ---------------------------------------------------------------- leave


def test_leaving_last_carrier_is_lost_with_winback_for_big_spenders() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00", "wecom", staff_id="s7")
    s.join("2026-03-01 11:00", "group")
    s.order("2026-03-02 10:00", "1000")
    s.leave("2026-03-03 10:00", "group")
    assert s.changes("health") == []
    s.leave("2026-03-04 10:00", "wecom")
    assert s.changes("health") == [("active", "lost")]
    [winback] = s.reminders("winback")
    assert winback.detail["channel"] == "phone" and winback.detail["assignee"] == "s7"


def test_small_spender_leaving_gets_no_winback_and_unknown_carrier_leave_is_ignored() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00")
    s.order("2026-03-02 10:00", "999.99")
    s.leave("2026-03-03 10:00", "group")  # was never in group
    assert s.changes("health") == []
    s.leave("2026-03-03 11:00", "wecom")
    assert s.reminders("winback") == []
    assert s.changes("health") == [("active", "lost")]


def test_lost_stays_lost_on_order_until_rejoin() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00")
    s.leave("2026-03-02 10:00")
    s.order("2026-03-03 10:00", "10")
    s.chat("2026-03-03 11:00", "inbound")
    assert s.state().health == "lost"


# ---------------------------------------------------------------- dormant


def test_dormant_after_180_days_without_order_or_inbound() -> None:
    s = Scenario()
    s.order("2026-01-01 10:00", "10")
    s.chat("2026-02-01 10:00", "inbound")
    s.chat("2026-05-01 10:00", "outbound", staff_id="s1")  # outbound is not activity
    s.until("2026-12-31 00:00")
    dormant = s.of("change", field="health", to="dormant")
    assert [a.occurred_at for a in dormant] == [t("2026-07-31 10:00")]
    s.order("2027-01-02 10:00", "10")
    assert s.changes("health")[-1] == ("dormant", "active")


# ---------------------------------------------------------------- contact policy


def test_quiet_hours_move_customer_facing_due_time_across_midnight() -> None:
    s = Scenario()
    s.order("2026-03-01 23:30", "99")  # invite due inside quiet hours
    [invite] = s.reminders("invite_join")
    assert invite.detail["not_before"] == format_rfc3339(t("2026-03-02 08:00"))
    assert invite.detail["deadline"] is None
    s.order("2026-04-02 02:00", "99", customer_id="c2")  # after midnight: same day 08:00
    [invite2] = s.reminders("invite_join", "c2")
    assert invite2.detail["not_before"] == format_rfc3339(t("2026-04-02 08:00"))
    s.order("2026-04-02 08:00", "99", customer_id="c3")  # end of quiet hours is outside
    assert s.reminders("invite_join", "c3")[0].detail["not_before"] == format_rfc3339(
        t("2026-04-02 08:00")
    )


def test_frequency_cap_suppresses_third_reminder_in_rolling_seven_days() -> None:
    s = Scenario()
    s.join("2026-03-01 09:00", "wecom", staff_id="s1")
    s.order("2026-03-01 10:00", "1000")
    s.leave("2026-03-02 10:00")  # winback (1)
    s.order("2026-03-03 10:00", "10")  # invite (2), outside the pool now
    for n in range(5):  # reengage (3) on the 5th outbound -> capped
        s.chat(f"2026-03-0{n + 4} 10:00", "outbound", staff_id="s1")
    [held] = s.suppressed()
    assert held.detail["reason"] == "frequency_cap"
    assert held.detail["action"]["detail"]["template"] == "reengage"
    assert s.reminders("reengage") == []
    # the window rolls: 7 days after the first two touches a new one goes through
    s.order("2026-04-05 10:00", "10")
    assert len(s.reminders("invite_join")) == 2


def test_cap_window_is_rolling_not_calendar() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "10", customer_id="x")  # invite 03-01
    s.state("x").touches.append(t("2026-03-06 10:00"))  # a second touch 5 days later
    s.order("2026-04-05 10:00", "10", customer_id="x")  # 35 days later: window empty again
    assert len(s.reminders("invite_join", "x")) == 2
    assert s.suppressed("x") == []


def test_gifts_welcome_and_reply_overdue_are_never_capped() -> None:
    s = Scenario()
    s.join("2026-03-01 10:00")
    s.leave("2026-03-01 11:00")
    s.join("2026-03-01 12:00")
    s.leave("2026-03-01 13:00")
    s.join("2026-03-01 14:00")
    s.chat("2026-03-01 15:00", "inbound")
    s.until("2026-03-01 16:00")
    assert len(s.reminders("welcome_survey")) == 3
    assert len(s.reminders("reply_overdue")) == 1
    assert s.suppressed() == []


def test_holdout_group_is_deterministic_and_suppresses_customer_facing_only() -> None:
    rules = dataclasses.replace(Rules(), contact_policy=ContactPolicy(holdout_percent=50))
    s = Scenario(rules)
    for n in range(200):
        s.order("2026-03-01 10:00", "6000", customer_id=f"h{n}")
    held = {a.customer_id for a in s.of("suppressed")}
    sent = {a.customer_id for a in s.of("reminder")}
    assert held and sent and not held & sent
    assert 60 < len(held) < 140
    assert all(a.detail["reason"] == "holdout" for a in s.of("suppressed"))
    assert len(s.of("gift", code="tier_5000")) == 200  # gifts are not held back
    again = Scenario(rules)
    for n in range(200):
        again.order("2026-03-01 10:00", "6000", customer_id=f"h{n}")
    assert {a.customer_id for a in again.of("suppressed")} == held


# ---------------------------------------------------------------- de-duplication, ordering


def test_retried_event_is_ignored_and_counted() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "6000", event_id="E1", order_id="A")
    before = list(s.actions)
    s.order("2026-03-01 10:00", "6000", event_id="E1", order_id="A")
    assert s.last_outcome == "duplicate"
    assert s.actions == before
    assert s.state().spend_fen == 600_000
    assert s.engine.stats.by_outcome()["duplicate"] == 1


def test_same_paid_order_under_a_new_event_id_counts_once() -> None:
    s = Scenario()
    s.order("2026-03-01 10:00", "6000", event_id="E1", order_id="A")
    s.order("2026-03-01 10:00", "6000", event_id="E2", order_id="A")
    assert s.last_outcome == "duplicate"
    assert s.state().orders == 1


def test_out_of_order_order_keeps_last_order_and_cycle_sorted() -> None:
    s = Scenario()
    s.order("2026-03-10 10:00", "10")
    s.order("2026-03-01 10:00", "10")  # late
    st = s.state()
    assert st.last_order_at == t("2026-03-10 10:00")
    assert st.first_order_at == t("2026-03-01 10:00")
    assert st.order_times == sorted(st.order_times)


def test_action_ids_are_deterministic_and_unique() -> None:
    def run() -> list[str]:
        s = Scenario()
        s.join("2026-03-01 10:00", staff_id="s1")
        s.order("2026-03-01 11:00", "60000")
        s.chat("2026-03-01 12:00", "inbound")
        s.until("2026-12-01 00:00")
        return [a.action_id for a in s.actions]

    ids = run()
    assert ids == run()
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- bounded state


def join_event(n: int, carrier: str, *, leave: bool = False) -> Join:
    at = t("2026-03-01 10:00") + n * MINUTE
    return Join(f"j{n}", "c1", at, leave, carrier, "package_card", "s1", None)


def test_fourteen_thousand_carriers_keep_the_state_small_and_the_extra_joins_rejected() -> None:
    # the fuzzing case: distinct 64-character carriers grew one changelog record to 1.13 MB
    rules = Rules()
    limit = rules.engine.max_carriers
    state: CustomerState | None = None
    outcomes: list[str] = []
    sizes: list[int] = []
    for n in range(14_000):
        event = join_event(n, f"{n:064d}")
        step = apply_event(state, event, event.at, rules)
        outcomes.append(step.outcome)
        if step.outcome == "rejected":
            assert step.state is state  # nothing of it applied: not even the seen window
            assert step.actions == []
            assert step.reason == (
                f"state_too_large: already in {limit} carriers (max_carriers {limit}); "
                f"join to {event.carrier!r} not applied"
            )
        state = step.state
        if n % 1000 == 999:
            sizes.append(len(stored.dumps(state)))
    assert outcomes == ["ok"] * limit + ["rejected"] * (14_000 - limit)
    assert state is not None
    assert len(state.carriers) == limit
    assert len(set(sizes)) == 1  # flat once full: nothing more is stored
    assert sizes[0] < rules.engine.max_state_bytes


def test_at_max_carriers_leaves_and_joins_to_a_held_carrier_still_apply() -> None:
    rules = Rules(engine=Engine(max_carriers=2))
    state: CustomerState | None = None
    history = [
        ("wecom", False, "ok"),
        ("group", False, "ok"),
        ("wechat", False, "rejected"),  # a third carrier
        ("group", False, "ok"),  # already held: no growth
        ("group", True, "ok"),  # a leave makes room
        ("wechat", False, "ok"),
        ("app", False, "rejected"),
    ]
    for n, (carrier, leave, expected) in enumerate(history):
        event = join_event(n, carrier, leave=leave)
        step = apply_event(state, event, event.at, rules)
        assert (carrier, step.outcome) == (carrier, expected)
        assert (step.reason is not None) == (expected == "rejected")
        state = step.state
    assert state is not None
    assert set(state.carriers) == {"wecom", "wechat"}


def test_a_rejected_join_resent_is_rejected_again_not_a_duplicate() -> None:
    rules = Rules(engine=Engine(max_carriers=1))
    first = apply_event(None, join_event(0, "wecom"), 0, rules)
    extra = join_event(1, "group")
    rejected = apply_event(first.state, extra, 0, rules)
    assert rejected.outcome == "rejected"
    assert apply_event(rejected.state, extra, 0, rules).outcome == "rejected"


def test_membership_paid_far_ahead_is_rejected_and_never_overflows_the_calendar() -> None:
    # found alongside: 7,979 prepaid renewals carried member_until past year 9999, where
    # formatting it raised OverflowError inside the core: a crash on every retry
    rules = Rules()
    at = t("2026-03-01 10:00")
    state: CustomerState | None = None
    outcomes: list[str] = []
    for n in range(8_000):
        order = Order(f"m{n}", "c1", at, f"o{n}", "paid", 100_000, "tmall", membership=True)
        step = apply_event(state, order, at, rules)
        outcomes.append(step.outcome)
        state = step.state
    limit = rules.engine.max_member_ahead_days
    years = limit // rules.membership.days  # 10 payments fit, the 11th would not
    assert outcomes == ["ok"] * years + ["rejected"] * (8_000 - years)
    assert state is not None and state.member_until == at + years * rules.membership.days * DAY
    assert step.reason == (
        f"out_of_range: membership would run {(years + 1) * rules.membership.days} days past "
        f"this payment (max_member_ahead_days {limit}); 'o7999' not applied"
    )
    # a year on, one more year fits again
    later = at + rules.membership.days * DAY
    renewal = Order("m-later", "c1", later, "o-later", "paid", 100_000, "tmall", membership=True)
    assert apply_event(state, renewal, later, rules).outcome == "ok"


def test_due_times_are_clamped_never_overflow() -> None:
    """Two orders seven thousand years apart (replay with a far --now accepts both): the
    repurchase timers would fall after year 9999; they are clamped and still format."""
    s = Scenario()
    s.send(
        type="order",
        order_id="a",
        status="paid",
        amount="10",
        channel="tmall",
        occurred_at="2001-01-01T00:00:00Z",
    )
    s.send(
        type="order",
        order_id="b",
        status="paid",
        amount="10",
        channel="tmall",
        occurred_at="8999-01-01T00:00:00Z",
    )
    state = s.state()
    assert max(t.due for t in state.timers.values()) == LATEST_DUE
    s.engine.advance(LATEST_DUE)  # firing them formats their times: no OverflowError
    assert any(a.rule == "repurchase_due" for a in s.sink.actions)
