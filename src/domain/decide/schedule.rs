//! Schedules: how a cron expression is read (as tokio-cron-scheduler 0.15
//! reads it, seconds first, day-of-month AND day-of-week), when it fires
//! next in its time zone, and the daemon's sequence of fire times (the next
//! target from the previous one; ticks that fell while a push ran are
//! skipped). The one source of fire times, for the daemon, the freeze and
//! `status`.
//!
//! This is the seam for tokio-cron-scheduler's defect: 0.15 turns a job's
//! time zone into the UTC offset in force when the job is created (upstream
//! issues #87 and #107), so a job that lives through a DST change fires an
//! hour off. Fire times are therefore computed here, afresh for every fire,
//! from croner and chrono-tz; the daemon only asks the crate to *run* a
//! one-shot job at the instant computed here.
//!
//! DST, following croner's documented rules (a *fixed-time* schedule has
//! one number each in its second, minute and hour fields, e.g.
//! `0 30 1 * * *`; anything else is an *interval* schedule):
//! - spring forward (a wall time that does not exist): a fixed-time
//!   schedule fires once, at the first instant after the gap (02:30 in Los
//!   Angeles on 2026-03-08 fires at 03:00 PDT); an interval schedule skips
//!   the missing occurrences;
//! - fall back (a wall time that happens twice): a fixed-time schedule fires
//!   once, at the first of the two instants (01:30 PDT, not 01:30 PST); an
//!   interval schedule fires at both.
//!
//! croner's own `find_next_occurrence` searches in wall-clock time, so in
//! the repeated hour it can answer an instant *before* the one it was asked
//! after, and from the first pass it misses the second pass; `next_fire`
//! corrects both, so the sequence of fire times is strictly increasing.
//!
//! Not here: waiting, the clock, running jobs (`cmd::daemon`).

use chrono::{DateTime, LocalResult, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Parses a cron expression with the settings tokio-cron-scheduler 0.15 uses.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// The first time strictly after `after` that `cron` fires, read in `tz`
/// with the DST rules above. `None` if it never fires again.
pub fn next_fire(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let fixed = cron.determine_job_type() == croner::JobType::FixedTime;
    let local = after.with_timezone(&tz);
    let mut best = None;
    // `after` in the first pass of a repeated hour: an interval schedule
    // also fires in the second pass, at wall times croner's forward search
    // has already passed. Search again from where the second pass begins.
    if !fixed {
        if let LocalResult::Ambiguous(first, second) = tz.from_local_datetime(&local.naive_local())
        {
            if first == local {
                let start = second_pass_start(tz, first, second);
                best = cron
                    .find_next_occurrence(&start, true)
                    .ok()
                    .and_then(|c| instant(cron, tz, &c, fixed, after));
            }
        }
    }
    let mut from = local;
    // Each round moves croner's wall-clock search forward; an answer that is
    // no fire time after `after` comes only from a repeated hour or a gap,
    // so a few rounds suffice.
    for _ in 0..8 {
        let c = cron.find_next_occurrence(&from, false).ok()?;
        if let Some(t) = instant(cron, tz, &c, fixed, after) {
            return Some(best.map_or(t, |b: DateTime<Utc>| b.min(t)));
        }
        from = c;
    }
    best
}

/// The instant a croner answer stands for, if it is a fire time after
/// `after`: croner answers the first of two instants that share a wall
/// time; an interval schedule fires at the second one too.
fn instant(
    cron: &croner::Cron,
    tz: Tz,
    c: &DateTime<Tz>,
    fixed: bool,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let candidates = match tz.from_local_datetime(&c.naive_local()) {
        LocalResult::Ambiguous(first, second) if !fixed => vec![first, second],
        LocalResult::Ambiguous(first, _) => vec![first],
        // croner's answer for a fixed time that falls in a gap is the first
        // instant after the gap. It also answers that for a fixed time
        // *before* the gap whose search stepped through it (01:30 on the
        // spring night would fire at 01:30 and again at 03:00): only a wall
        // time in the gap counts.
        _ if fixed && !cron.is_time_matching(c).unwrap_or(false) => {
            if !in_the_gap_before(cron, tz, c) {
                return None;
            }
            vec![*c]
        }
        _ => vec![*c],
    };
    candidates
        .into_iter()
        .map(|t| t.with_timezone(&Utc))
        .find(|t| *t > after)
}

/// Whether `cron` matches a wall time in the gap that ends at `c` (a DST
/// change forward): read in the offset before the change, where those wall
/// times exist.
fn in_the_gap_before(cron: &croner::Cron, tz: Tz, c: &DateTime<Tz>) -> bool {
    let end = c.with_timezone(&Utc);
    let before = tz
        .offset_from_utc_datetime(&(end - chrono::Duration::seconds(1)).naive_utc())
        .fix();
    if before.local_minus_utc() >= c.offset().fix().local_minus_utc() {
        return false;
    }
    // `end` in the old offset is the first wall time of the gap.
    cron.find_next_occurrence(&end.with_timezone(&before), true)
        .is_ok_and(|m| m.naive_local() < c.naive_local())
}

/// The first instant of the second pass of a repeated hour, given the two
/// instants (`first` < `second`) of one wall time in it.
fn second_pass_start(tz: Tz, first: DateTime<Tz>, second: DateTime<Tz>) -> DateTime<Tz> {
    let offset = |t: i64| tz.offset_from_utc_datetime(&utc(t).naive_utc()).fix();
    let (mut lo, mut hi) = (first.timestamp(), second.timestamp());
    let late = offset(hi);
    // The offset changes once between them: find the second it does.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset(mid) == late {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    utc(hi).with_timezone(&tz)
}

fn utc(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Every fire time strictly after `after`, in order.
pub fn fires(
    cron: &croner::Cron,
    tz: Tz,
    after: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + '_ {
    std::iter::successors(next_fire(cron, tz, after), move |t| next_fire(cron, tz, *t))
}

/// What the daemon does once the push for the fire time `fired` has ended,
/// at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfterFire {
    /// Fire times after `fired` and before `now`: they fell while the push
    /// ran; skipped, never queued.
    pub skipped: u64,
    /// The next fire time to wait for: after `fired` (so a job that fired
    /// early cannot fire twice for one occurrence) and not before `now`.
    /// `None` if the schedule never fires again.
    pub next: Option<DateTime<Utc>>,
}

/// The next target after the push for `fired` ended at `now`: computed
/// from the previous target, never from `now` alone.
pub fn after_fire(
    cron: &croner::Cron,
    tz: Tz,
    fired: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AfterFire {
    let mut skipped = 0;
    for t in fires(cron, tz, fired) {
        if t >= now {
            return AfterFire {
                skipped,
                next: Some(t),
            };
        }
        skipped += 1;
    }
    AfterFire {
        skipped,
        next: None,
    }
}

/// The day-of-month and day-of-week fields of a schedule, when both
/// restrict the days (neither is `?` nor begins with `*`): pushgate (like
/// tokio-cron-scheduler) fires when *both* match, a system crontab when
/// *either* does. A field that begins with `*` (`*/2` too) makes cron read
/// both with AND, as pushgate does (Vixie cron's `DOM_STAR`/`DOW_STAR`).
/// `None` for a schedule without that ambiguity.
pub fn days_both_restricted(expr: &str) -> Option<(&str, &str)> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return None;
    }
    let restricts = |f: &str| !f.starts_with('*') && f != "?";
    (restricts(fields[3]) && restricts(fields[5])).then(|| (fields[3], fields[5]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::Los_Angeles as LA;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// `n` fire times after `from`, each as UTC and as Los Angeles time.
    fn check(expr: &str, from: &str, n: usize, expect: expect_test::Expect) {
        let cron = parse_cron(expr).unwrap();
        let out: Vec<String> = fires(&cron, LA, at(from))
            .take(n)
            .map(|t| {
                format!(
                    "{}  {}",
                    t.format("%Y-%m-%d %H:%M UTC"),
                    t.with_timezone(&LA).format("%a %H:%M %Z")
                )
            })
            .collect();
        expect.assert_eq(&out.join("\n"));
    }

    #[test]
    fn ten_oclock_stays_ten_oclock_across_spring_forward() {
        check(
            "0 0 10 * * *",
            "2026-03-06T12:00:00Z",
            4,
            expect_test::expect![[r#"
                2026-03-06 18:00 UTC  Fri 10:00 PST
                2026-03-07 18:00 UTC  Sat 10:00 PST
                2026-03-08 17:00 UTC  Sun 10:00 PDT
                2026-03-09 17:00 UTC  Mon 10:00 PDT"#]],
        );
    }

    #[test]
    fn ten_oclock_stays_ten_oclock_across_fall_back() {
        check(
            "0 0 10 * * *",
            "2026-10-30T12:00:00Z",
            4,
            expect_test::expect![[r#"
                2026-10-30 17:00 UTC  Fri 10:00 PDT
                2026-10-31 17:00 UTC  Sat 10:00 PDT
                2026-11-01 18:00 UTC  Sun 10:00 PST
                2026-11-02 18:00 UTC  Mon 10:00 PST"#]],
        );
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_fires_once_at_its_first_instant() {
        check(
            "0 30 1 * * *",
            "2026-10-30T12:00:00Z",
            4,
            expect_test::expect![[r#"
                2026-10-31 08:30 UTC  Sat 01:30 PDT
                2026-11-01 08:30 UTC  Sun 01:30 PDT
                2026-11-02 09:30 UTC  Mon 01:30 PST
                2026-11-03 09:30 UTC  Tue 01:30 PST"#]],
        );
    }

    #[test]
    fn a_fixed_time_before_the_gap_is_untouched_on_the_spring_night() {
        check(
            "0 30 1 * * *",
            "2026-03-06T12:00:00Z",
            3,
            expect_test::expect![[r#"
                2026-03-07 09:30 UTC  Sat 01:30 PST
                2026-03-08 09:30 UTC  Sun 01:30 PST
                2026-03-09 08:30 UTC  Mon 01:30 PDT"#]],
        );
    }

    #[test]
    fn a_fixed_time_in_the_gap_fires_once_right_after_it() {
        check(
            "0 30 2 * * *",
            "2026-03-06T12:00:00Z",
            3,
            expect_test::expect![[r#"
                2026-03-07 10:30 UTC  Sat 02:30 PST
                2026-03-08 10:00 UTC  Sun 03:00 PDT
                2026-03-09 09:30 UTC  Mon 02:30 PDT"#]],
        );
        // 02:30 exists once on the autumn night (the repeated hour is 01:xx).
        check(
            "0 30 2 * * *",
            "2026-10-31T12:00:00Z",
            2,
            expect_test::expect![[r#"
                2026-11-01 10:30 UTC  Sun 02:30 PST
                2026-11-02 10:30 UTC  Mon 02:30 PST"#]],
        );
    }

    #[test]
    fn an_interval_schedule_skips_the_gap_and_fires_in_both_passes_of_the_repeated_hour() {
        check(
            "0 */30 * * * *",
            "2026-03-08T09:00:00Z",
            4,
            expect_test::expect![[r#"
                2026-03-08 09:30 UTC  Sun 01:30 PST
                2026-03-08 10:00 UTC  Sun 03:00 PDT
                2026-03-08 10:30 UTC  Sun 03:30 PDT
                2026-03-08 11:00 UTC  Sun 04:00 PDT"#]],
        );
        check(
            "0 */30 * * * *",
            "2026-11-01T07:45:00Z",
            7,
            expect_test::expect![[r#"
                2026-11-01 08:00 UTC  Sun 01:00 PDT
                2026-11-01 08:30 UTC  Sun 01:30 PDT
                2026-11-01 09:00 UTC  Sun 01:00 PST
                2026-11-01 09:30 UTC  Sun 01:30 PST
                2026-11-01 10:00 UTC  Sun 02:00 PST
                2026-11-01 10:30 UTC  Sun 02:30 PST
                2026-11-01 11:00 UTC  Sun 03:00 PST"#]],
        );
    }

    #[test]
    fn next_fire_is_after_its_argument_from_anywhere_in_the_repeated_hour() {
        // croner alone answers 08:30 UTC (01:30 PDT) when asked after
        // 09:10 UTC (01:10 PST): an instant in the past.
        for expr in [
            "0 30 1 * * *",
            "0 */15 * * * *",
            "0 0 10 * * *",
            "* * * * * *",
        ] {
            let cron = parse_cron(expr).unwrap();
            let mut t = at("2026-11-01T07:00:00Z");
            while t < at("2026-11-01T11:00:00Z") {
                let next = next_fire(&cron, LA, t).unwrap();
                assert!(next > t, "{expr}: after {t} came {next}");
                // Nothing was skipped: no fire time between t and next.
                let one_second_later = t + chrono::Duration::seconds(1);
                if next > one_second_later {
                    assert_eq!(
                        next_fire(&cron, LA, one_second_later),
                        Some(next),
                        "{expr} {t}"
                    );
                }
                t += chrono::Duration::minutes(7);
            }
        }
    }

    /// The DST rules written out by brute force, one minute at a time.
    fn reference(
        cron: &croner::Cron,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let fixed = cron.determine_job_type() == croner::JobType::FixedTime;
        let minute = chrono::Duration::minutes(1);
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            let l = t.with_timezone(&LA);
            let first_of_two = match LA.from_local_datetime(&l.naive_local()) {
                LocalResult::Ambiguous(first, _) => first == l,
                _ => true,
            };
            let mut fire = cron.is_time_matching(&l).unwrap() && (first_of_two || !fixed);
            let before = (t - minute).with_timezone(&LA).offset().fix();
            if fixed && before.local_minus_utc() < l.offset().fix().local_minus_utc() {
                // Right after a gap: a fixed time inside it fires now.
                let mut g = t.with_timezone(&before);
                while g.naive_local() < l.naive_local() {
                    fire |= cron.is_time_matching(&g).unwrap();
                    g += minute;
                }
            }
            if fire {
                out.push(t);
            }
            t += minute;
        }
        out
    }

    #[test]
    fn fire_times_follow_the_dst_rules_minute_by_minute_on_both_nights() {
        let exprs = [
            "0 30 1 * * *",
            "0 30 2 * * *",
            "0 0 2 * * *",
            "0 59 1 * * *",
            "0 0 3 * * *",
            "0 0 10 * * *",
            "0 */15 * * * *",
            "0 0 * * * *",
            "0 0 1,2 * * *",
        ];
        let nights = [
            ("2026-03-07T06:00:00Z", "2026-03-09T14:00:00Z"),
            ("2026-10-31T06:00:00Z", "2026-11-02T14:00:00Z"),
        ];
        for expr in exprs {
            let cron = parse_cron(expr).unwrap();
            for (from, to) in nights {
                let (from, to) = (at(from), at(to));
                let ours: Vec<_> = fires(&cron, LA, from - chrono::Duration::seconds(1))
                    .take_while(|t| *t < to)
                    .collect();
                assert_eq!(ours, reference(&cron, from, to), "{expr} from {from}");
            }
        }
    }

    #[test]
    fn a_fixed_offset_would_fire_an_hour_off_after_the_change() {
        // What tokio-cron-scheduler 0.15 does (#87, #107): the offset of the
        // moment the job was created (PDT, -7h) applied after fall back.
        let cron = parse_cron("0 0 10 * * *").unwrap();
        let pdt = chrono::FixedOffset::west_opt(7 * 3600).unwrap();
        let after = at("2026-11-01T12:00:00Z");
        let fixed = cron.find_next_occurrence(&after.with_timezone(&pdt), false);
        assert_eq!(
            fixed.unwrap().to_utc(),
            at("2026-11-01T17:00:00Z"),
            "09:00 PST"
        );
        assert_eq!(
            next_fire(&cron, LA, after),
            Some(at("2026-11-01T18:00:00Z"))
        );
    }

    fn after(expr: &str, fired: &str, now: &str) -> (u64, Option<String>) {
        let cron = parse_cron(expr).unwrap();
        let a = after_fire(&cron, LA, at(fired), at(now));
        (a.skipped, a.next.map(|t| t.to_rfc3339()))
    }

    #[test]
    fn after_a_fire_the_next_target_comes_from_the_previous_one() {
        let beta = "0 */15 * * * *";
        let cases = [
            // A push that ended before the next tick: nothing skipped.
            (
                beta,
                "2026-11-24T10:00:00Z",
                "2026-11-24T10:03:00Z",
                0,
                "2026-11-24T10:15:00+00:00",
            ),
            // A job that fired early (before its target): the same
            // occurrence is not fired again.
            (
                beta,
                "2026-11-24T10:00:00Z",
                "2026-11-24T09:59:59.400Z",
                0,
                "2026-11-24T10:15:00+00:00",
            ),
            // A push that ran 40 minutes: 10:15 and 10:30 fell while it ran.
            (
                beta,
                "2026-11-24T10:00:00Z",
                "2026-11-24T10:40:00Z",
                2,
                "2026-11-24T10:45:00+00:00",
            ),
            // Ended exactly at a tick: that tick is not skipped, it fires now.
            (
                beta,
                "2026-11-24T10:00:00Z",
                "2026-11-24T10:15:00Z",
                0,
                "2026-11-24T10:15:00+00:00",
            ),
            // Across fall back, a daily push that ran 25 hours skips one day.
            (
                "0 0 10 * * *",
                "2026-10-31T17:00:00Z",
                "2026-11-01T18:00:01Z",
                1,
                "2026-11-02T18:00:00+00:00",
            ),
            // The 01:30 fixed-time fire on the autumn night, ending in the
            // second pass of that hour: 01:30 PST is no second occurrence.
            (
                "0 30 1 * * *",
                "2026-11-01T08:30:00Z",
                "2026-11-01T09:45:00Z",
                0,
                "2026-11-02T09:30:00+00:00",
            ),
        ];
        for (expr, fired, now, skipped, next) in cases {
            assert_eq!(
                after(expr, fired, now),
                (skipped, Some(next.to_owned())),
                "{expr} fired {fired}, ended {now}"
            );
        }
    }

    #[test]
    fn a_schedule_that_never_fires_again_has_no_next_target() {
        assert_eq!(
            after(
                "0 0 0 1 1 * 2026",
                "2026-01-01T08:00:00Z",
                "2026-01-01T08:01:00Z"
            ),
            (0, None)
        );
    }

    #[test]
    fn both_day_fields_restricting_is_what_crontab_reads_differently() {
        let cases = [
            ("0 0 10 1 * Mon", Some(("1", "Mon"))),
            ("0 0 10 1-7 * 1 2027", Some(("1-7", "1"))),
            ("0 0 10 L * +Fri", Some(("L", "+Fri"))),
            ("0 0 10 * * Mon-Fri", None),
            ("0 0 10 1 * *", None),
            ("0 0 10 ? * Mon", None),
            ("0 0 10 15 * ?", None),
            ("0 */15 * * * *", None),
            // A step over `*` is a star to cron: AND, as pushgate reads it.
            ("0 0 10 */2 * Mon", None),
            ("0 0 10 1 * */2", None),
            ("0 0 10 2/3 * Mon", Some(("2/3", "Mon"))),
            ("@daily", None),
        ];
        for (expr, expect) in cases {
            assert_eq!(days_both_restricted(expr), expect, "{expr}");
        }
        // And pushgate does read `*/2` with Mon as cron does: an odd day
        // that is a Monday (30 November is a Monday, but even).
        let cron = parse_cron("0 0 10 */2 * Mon").unwrap();
        let after = "2026-11-29T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            next_fire(&cron, chrono_tz::UTC, after).map(|t| t.to_rfc3339()),
            Some("2026-12-07T10:00:00+00:00".to_owned())
        );
    }
}

/// Whose turn it is when a place frees among `max_concurrent_pushes`: the
/// first app after `last` (the one served last), in name order and
/// wrapping, among those with a push waiting. So an app with many or slow
/// pushes waits its turn like the others and never starves them.
pub fn next_turn<'a, T: Ord>(waiting: &'a [T], last: Option<&T>) -> Option<&'a T> {
    let after = last.and_then(|l| waiting.iter().filter(|w| *w > l).min());
    after.or_else(|| waiting.iter().min())
}

#[cfg(test)]
mod turn_tests {
    use super::next_turn;

    #[test]
    fn turns_go_round_the_waiting_apps_after_the_last_served() {
        let w = ["api", "db", "web"];
        assert_eq!(next_turn(&w, None), Some(&"api"));
        assert_eq!(next_turn(&w, Some(&"api")), Some(&"db"));
        assert_eq!(next_turn(&w, Some(&"db")), Some(&"web"));
        assert_eq!(next_turn(&w, Some(&"web")), Some(&"api"), "wraps");
        // The app served last waits behind every other app waiting.
        assert_eq!(next_turn(&["web"], Some(&"web")), Some(&"web"));
        assert_eq!(next_turn(&["api", "web"], Some(&"cache")), Some(&"web"));
        assert_eq!(next_turn::<&str>(&[], Some(&"web")), None);
    }
}
