//! The checks every service must pass, for any type that implements [`Protocol`], before it is listed:
//! its examples get their replies under any split of the stream; no piece's reply passes the service's own
//! [`Growth`](super::Growth) bound; it never holds more than it declares; its datagrams match its examples
//! and never grow past [`MAX_DATAGRAM_GROWTH`]. (Whether its bounds leave a server room to read is checked
//! where the server's limits are known: [`super::Service::check`], when a configuration is validated.) Pure, like
//! every service: `docs/10-adding-a-service.md` runs it on a new service in a doctest, and
//! `tests/service.rs` runs it on every listed one.

use super::clock::Clock;
use super::example::{Example, Rng};
use super::protocol::{Protocol, ServiceOptions, Step, StreamSession, MAX_DATAGRAM_GROWTH};

/// Runs every check on `P` with `options`, over the examples made from `seeds`. `Err` says which check
/// failed, for which seed, with what.
pub fn check<P: Protocol>(
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
    Ok(())
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
fn feed<P: Protocol>(
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
        let bound = growth.max_output(session.held(), cut - from);
        let before = out.len();
        let step = session.feed(&clock, &request[from..cut], &mut out);
        if out.len() - before > bound {
            return Err(format!(
                "{} bytes of input made {} bytes of reply, over the declared bound of {bound}",
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

fn check_datagram<P: Protocol>(options: &ServiceOptions, seed: u64) -> Result<(), String> {
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
