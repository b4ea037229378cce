//! The checks every service must pass, for any type that implements [`Protocol`](super::Protocol) and
//! [`Tooling`], before it is listed: its examples get their replies under any split of the stream; its
//! datagrams match its examples; and, over its examples and over adversarial input no example would send
//! (`adversary.rs`: runs of every byte, line endings alone, cut characters, spliced examples, random bytes,
//! up to 64 KiB, cut at random), no piece's reply passes the service's own [`Growth`](super::Growth) bound,
//! it never holds more than it declares, and no datagram reply grows past [`MAX_DATAGRAM_GROWTH`]. The
//! server's bound on memory per connection rests on those declared numbers, so they are held against the
//! worst input, not only the service's own. (Whether its bounds leave a server room to read is checked
//! where the server's limits are known: [`super::Service::check`], when a configuration is validated.)
//! Pure, like every service: `docs/10-adding-a-service.md` runs it on a new service in a doctest, and
//! `tests/service.rs` runs it on every listed one.

use super::adversary::{self, Input};
use super::clock::Clock;
use super::example::{Example, Rng};
use super::protocol::{ServiceOptions, Step, StreamSession, MAX_DATAGRAM_GROWTH};
use super::tooling::Tooling;

/// Runs every check on `P` with `options`, over the examples made from `seeds`. `Err` says which check
/// failed, for which seed, with what.
pub fn check<P: Tooling>(
    options: &ServiceOptions,
    seeds: std::ops::Range<u64>,
) -> Result<(), String> {
    if P::growth(options).per_byte == 0 {
        return Err(format!(
            "{}: a growth of 0 bytes per byte cannot be inverted",
            P::NAME
        ));
    }
    for seed in seeds {
        let mut rng = Rng::new(seed);
        let example = P::stream_example(options, &mut rng);
        for split in 0..4 {
            let cuts = cuts(&example.request, split, &mut rng);
            let got = feed::<P>(options, &example.request, &cuts)
                .map_err(|e| format!("{} seed {seed}: {e}", P::NAME))?;
            if !P::same_reply(&example.reply, &got) {
                return Err(format!(
                    "{} seed {seed}: {:?} cut at {cuts:?} should get {:?}, got {:?}",
                    P::NAME,
                    text(&example.request),
                    text(&example.reply),
                    text(&got)
                ));
            }
        }
        check_datagram::<P>(options, seed)?;
    }
    check_adversaries::<P>(options)
}

/// The example requests adversarial input is spliced from.
fn example_requests<P: Tooling>(options: &ServiceOptions) -> Vec<Vec<u8>> {
    (0..16)
        .map(|seed| P::stream_example(options, &mut Rng::new(seed)).request)
        .collect()
}

/// Every adversarial input, cut every way `adversary::cuts` says: no piece's reply over the declared
/// bound, never more held than declared, and no datagram reply longer than the amplification rule allows.
fn check_adversaries<P: Tooling>(options: &ServiceOptions) -> Result<(), String> {
    let mut rng = Rng::new(1);
    for input in adversary::inputs(&example_requests::<P>(options)) {
        for cuts in adversary::cuts(&input.bytes, &mut rng) {
            feed::<P>(options, &input.bytes, &cuts).map_err(|e| {
                format!(
                    "{}: {} ({} bytes){}: {e}",
                    P::NAME,
                    input.what,
                    input.bytes.len(),
                    if cuts.is_empty() {
                        String::new()
                    } else {
                        format!(", read in {} pieces", cuts.len() + 1)
                    }
                )
            })?;
        }
        check_drain::<P>(options, &input)?;
        if let Some(answer) = P::DATAGRAMS {
            let mut reply = Vec::new();
            answer(options, &input.bytes, &mut reply);
            if reply.len() > input.bytes.len() + MAX_DATAGRAM_GROWTH {
                return Err(format!(
                    "{}: the datagram {} ({} bytes) got a {}-byte reply, more than {MAX_DATAGRAM_GROWTH} bytes \
                     longer",
                    P::NAME,
                    input.what,
                    input.bytes.len(),
                    reply.len()
                ));
            }
        }
    }
    Ok(())
}

/// What a shutdown makes a session say for what it holds (`drain`) stays within the bound too.
fn check_drain<P: Tooling>(options: &ServiceOptions, input: &Input) -> Result<(), String> {
    let clock = Clock::fixed(1_000_000_000);
    let mut session = P::session(options);
    let mut out = Vec::new();
    session.greeting(&mut out);
    if session.feed(&clock, &input.bytes, &mut out) == Step::Close {
        return Ok(());
    }
    let bound = P::growth(options).max_output(session.held(), 1);
    let before = out.len();
    session.drain(&mut out);
    if out.len() - before > bound {
        return Err(format!(
            "{}: {} ({} bytes), then a shutdown: the drain made {} bytes, over the declared bound of {bound}",
            P::NAME,
            input.what,
            input.bytes.len(),
            out.len() - before
        ));
    }
    Ok(())
}

/// Of the adversarial inputs the service does not close on, the one whose reply is longest for its length
/// (fed whole, 64 bytes or more, so a fixed part does not decide): what a client that never reads would
/// send to fill a server fastest.
/// The tests flood real servers with it and check the high-water mark holds.
pub fn worst_input<P: Tooling>(options: &ServiceOptions) -> Vec<u8> {
    let clock = Clock::fixed(1_000_000_000);
    let mut worst = (0.0, Vec::new());
    for input in adversary::inputs(&example_requests::<P>(options)) {
        if input.bytes.len() < 64 {
            continue;
        }
        let mut session = P::session(options);
        let mut out = Vec::new();
        if session.feed(&clock, &input.bytes, &mut out) == Step::Close {
            // A client sending this would be closed on: no flood.
            continue;
        }
        let ratio = out.len() as f64 / input.bytes.len() as f64;
        if ratio > worst.0 {
            worst = (ratio, input.bytes);
        }
    }
    worst.1
}

/// Where to cut `request`: not at all, at every byte, or at a few random places.
fn cuts(request: &[u8], split: usize, rng: &mut Rng) -> Vec<usize> {
    match split {
        0 => Vec::new(),
        1 => (1..request.len()).collect(),
        _ => {
            let mut cuts: Vec<usize> = (0..1 + rng.below(8))
                .map(|_| rng.below(request.len() + 1))
                .collect();
            cuts.sort_unstable();
            cuts
        }
    }
}

/// Feeds `request` cut at `cuts` to a fresh session, checking the bounds on every piece.
fn feed<P: Tooling>(
    options: &ServiceOptions,
    request: &[u8],
    cuts: &[usize],
) -> Result<Vec<u8>, String> {
    let clock = Clock::fixed(1_000_000_000);
    let growth = P::growth(options);
    let max_held = P::max_held(options);
    let mut session = P::session(options);
    let mut out = Vec::new();
    session.greeting(&mut out);
    let mut from = 0;
    for &cut in cuts.iter().chain([request.len()].iter()) {
        let held = session.held();
        let bound = growth.max_output(held, cut - from);
        let before = out.len();
        let step = session.feed(&clock, &request[from..cut], &mut out);
        if out.len() - before > bound {
            return Err(format!(
                "{} bytes of input, holding {held}, made {} bytes of reply, over the declared bound of {bound} \
                 ({growth:?})",
                cut - from,
                out.len() - before
            ));
        }
        if session.held() > max_held {
            return Err(format!(
                "holds {} bytes, over the declared {max_held}",
                session.held()
            ));
        }
        if step == Step::Close {
            return Ok(out);
        }
        from = cut;
    }
    // The service's own deadline, if it set one, comes due: what it says then is bounded too.
    if let Some(due) = session.deadline() {
        let late = Clock::fixed(1_000_000_000);
        late.set(due);
        let bound = growth.max_output(session.held(), 1);
        let before = out.len();
        let step = session.expire(&late, &mut out);
        if out.len() - before > bound {
            return Err(format!(
                "its deadline made {} bytes, over the declared bound of {bound}",
                out.len() - before
            ));
        }
        if step == Step::Close {
            return Ok(out);
        }
    }
    let bound = growth.max_output(session.held(), 1);
    let before = out.len();
    session.finish(&clock, &mut out);
    if out.len() - before > bound {
        return Err(format!(
            "end of stream made {} bytes, over the declared bound of {bound}",
            out.len() - before
        ));
    }
    Ok(out)
}

fn check_datagram<P: Tooling>(options: &ServiceOptions, seed: u64) -> Result<(), String> {
    let example = P::datagram_example(options, &mut Rng::new(seed));
    match (P::DATAGRAMS, example) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(format!("{} answers datagrams but has no example", P::NAME)),
        (None, Some(_)) => Err(format!(
            "{} has a datagram example but is TCP only",
            P::NAME
        )),
        (Some(answer), Some(Example { request, reply, .. })) => {
            let mut got = Vec::new();
            answer(options, &request, &mut got);
            if !P::same_reply(&reply, &got) {
                return Err(format!(
                    "{} seed {seed}: datagram {:?} should get {:?}, got {:?}",
                    P::NAME,
                    text(&request),
                    text(&reply),
                    text(&got)
                ));
            }
            if got.len() > request.len() + MAX_DATAGRAM_GROWTH {
                return Err(format!(
                    "{}: a {}-byte datagram got a {}-byte reply, more than {MAX_DATAGRAM_GROWTH} bytes longer",
                    P::NAME,
                    request.len(),
                    got.len()
                ));
            }
            Ok(())
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if bytes.len() > 200 {
        shown + "…"
    } else {
        shown
    }
}
