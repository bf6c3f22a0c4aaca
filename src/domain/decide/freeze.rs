//! The freeze and the soak: time-based holds, decided from an injected
//! `now` and the other cluster's schedule in *its* time zone (so the answer
//! is right across DST changes: the schedule is read in wall-clock time
//! each time, never as a fixed UTC offset).

use chrono::{DateTime, Duration, Utc};

use super::next_fire;
use crate::domain::plan::{FreezeFacts, HoldReason, SoakFacts};

/// Held while the other cluster's push runs, and during `duration` before
/// each of its scheduled pushes.
pub fn frozen(f: &FreezeFacts, now: DateTime<Utc>) -> Option<HoldReason> {
    if f.other_running {
        return Some(HoldReason::OtherRunning {
            other: f.other.clone(),
        });
    }
    // A push scheduled exactly now counts: it is about to start.
    let next = next_fire(&f.other_schedule, f.other_tz, now - Duration::seconds(1))?;
    (next - now <= f.duration).then(|| HoldReason::Frozen {
        other: f.other.clone(),
        until: next.with_timezone(&f.other_tz),
    })
}

/// Held until the source cluster has run the candidate for `min`.
pub fn soaking(s: &SoakFacts, now: DateTime<Utc>) -> Option<HoldReason> {
    // Past the end of time (a corrupt `since`, an absurd `min`): held.
    let until = s
        .since
        .checked_add_signed(s.min)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (now < until).then(|| HoldReason::Soaking {
        from: s.from.clone(),
        since: s.since,
        until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decide::{next_fire, parse_cron};
    use crate::domain::model::ClusterName;

    fn prod_freeze(running: bool) -> FreezeFacts {
        FreezeFacts {
            other: ClusterName::parse("prod").unwrap(),
            other_schedule: parse_cron("0 0 10,17 * * Mon-Fri").unwrap(),
            other_tz: chrono_tz::America::Los_Angeles,
            duration: Duration::minutes(90),
            other_running: running,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn check(now: &str) -> String {
        match frozen(&prod_freeze(false), at(now)) {
            None => "open".into(),
            Some(h) => h.to_string(),
        }
    }

    #[test]
    fn holds_beta_in_the_90_minutes_before_prod() {
        // Tuesday 2026-11-24, PST (UTC-8): prod at 10:00 = 18:00 UTC.
        assert_eq!(check("2026-11-24T16:29:59Z"), "open");
        assert_eq!(
            check("2026-11-24T16:30:00Z"),
            "frozen until 10:00 PST (prod push at 10:00 PST on Tue 2026-11-24)"
        );
        assert_eq!(
            check("2026-11-24T18:00:00Z"),
            "frozen until 10:00 PST (prod push at 10:00 PST on Tue 2026-11-24)"
        );
        assert_eq!(check("2026-11-24T18:00:01Z"), "open");
        assert_eq!(
            check("2026-11-25T00:45:00Z"),
            "frozen until 17:00 PST (prod push at 17:00 PST on Tue 2026-11-24)"
        );
        // No prod push on the weekend: Saturday morning is open.
        assert_eq!(check("2026-11-28T17:00:00Z"), "open");
    }

    #[test]
    fn follows_prod_across_the_autumn_dst_change() {
        // Clocks go back on Sunday 2026-11-01. Monday's 10:00 is PST
        // (18:00 UTC), not PDT (17:00 UTC) as a fixed offset would say.
        assert_eq!(check("2026-11-02T16:20:00Z"), "open");
        assert_eq!(
            check("2026-11-02T16:31:00Z"),
            "frozen until 10:00 PST (prod push at 10:00 PST on Mon 2026-11-02)"
        );
        // The Friday before, still PDT: 10:00 is 17:00 UTC.
        assert_eq!(
            check("2026-10-30T15:31:00Z"),
            "frozen until 10:00 PDT (prod push at 10:00 PDT on Fri 2026-10-30)"
        );
    }

    #[test]
    fn follows_prod_across_the_spring_dst_change() {
        // Clocks go forward on Sunday 2026-03-08. Monday's 10:00 is PDT
        // (17:00 UTC), not PST (18:00 UTC).
        assert_eq!(
            check("2026-03-09T15:31:00Z"),
            "frozen until 10:00 PDT (prod push at 10:00 PDT on Mon 2026-03-09)"
        );
        assert_eq!(check("2026-03-09T17:01:00Z"), "open");
        // Friday before, PST.
        assert_eq!(check("2026-03-06T16:29:00Z"), "open");
        assert_eq!(
            check("2026-03-06T16:31:00Z"),
            "frozen until 10:00 PST (prod push at 10:00 PST on Fri 2026-03-06)"
        );
    }

    #[test]
    fn holds_while_prod_runs_whatever_the_time() {
        let h = frozen(&prod_freeze(true), at("2026-11-28T17:00:00Z")).unwrap();
        assert_eq!(h.to_string(), "frozen while prod's push runs");
    }

    #[test]
    fn the_next_fire_is_read_in_the_schedules_time_zone() {
        let cron = parse_cron("0 0 10 * * *").unwrap();
        let la = chrono_tz::America::Los_Angeles;
        assert_eq!(
            next_fire(&cron, la, at("2026-10-31T18:00:00Z")),
            Some(at("2026-11-01T18:00:00Z")),
            "Sunday 10:00 is already PST"
        );
        assert_eq!(
            next_fire(&cron, la, at("2026-10-30T18:00:00Z")),
            Some(at("2026-10-31T17:00:00Z")),
            "Saturday 10:00 is still PDT"
        );
    }

    #[test]
    fn prod_waits_until_beta_has_run_the_commit_long_enough() {
        let s = SoakFacts {
            from: ClusterName::parse("beta").unwrap(),
            since: at("2026-11-24T08:00:00Z"),
            min: Duration::minutes(90),
        };
        let held = soaking(&s, at("2026-11-24T09:29:59Z")).unwrap();
        assert_eq!(
            held.to_string(),
            "soaking: beta has run it only since 2026-11-24 08:00 UTC; it may ship from 09:30 UTC"
        );
        assert!(soaking(&s, at("2026-11-24T09:30:00Z")).is_none());
    }

    #[test]
    fn a_soak_past_the_end_of_time_holds_and_does_not_panic() {
        let s = SoakFacts {
            from: ClusterName::parse("beta").unwrap(),
            since: DateTime::<Utc>::MAX_UTC - Duration::days(1),
            min: Duration::days(36_525),
        };
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .to_utc();
        assert!(matches!(soaking(&s, now), Some(HoldReason::Soaking { .. })));
    }
}
