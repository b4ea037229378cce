//! Inputs no service's own examples would send, for the conformance check to hold any service's declared
//! bounds against: runs of every byte value, line endings alone, characters cut between reads (UTF-8 and
//! GBK), the service's own examples cut up and spliced together, random bytes; up to 64 KiB long (a run of
//! each byte value up to 4 KiB, 64 KiB for a sample of values and for the line-ending bytes). A service's
//! `Growth` and `max_held` are numbers its author declares, and the server's promise of bounded memory per
//! connection rests on them; a bound checked only on the service's own short examples passed when it was
//! too small (an empty line answered `0\n` is two bytes for one, which examples of words never showed). The
//! same fixed seed every run, so a failure names an input that can be replayed.
//!
//! Walk-through: `docs/10-adding-a-service.md`.

use super::example::Rng;

/// One adversarial input and what it is, for a failure message.
#[derive(Clone, Debug)]
pub struct Input {
    /// What the bytes are, said so a person can tell (`a run of 4096 × 0x0a`).
    pub what: String,
    pub bytes: Vec<u8>,
}

/// The longest input: a datagram's worth, and more than any read of the servers here.
pub const LONGEST: usize = 64 * 1024;

/// Every adversarial input for a service whose own example requests are `examples`, from a fixed seed.
pub fn inputs(examples: &[Vec<u8>]) -> Vec<Input> {
    let mut rng = Rng::new(0x5eed);
    let mut out = Vec::new();
    let mut add = |what: String, bytes: Vec<u8>| out.push(Input { what, bytes });
    // Runs of each byte value, short and long; the longest for a sample of values (each is 64 KiB).
    for value in 0..=255u8 {
        for len in [1, 2, 5, 64, 4096] {
            add(format!("a run of {len} × 0x{value:02x}"), vec![value; len]);
        }
        if value % 17 == 0 || value == b'\n' || value == b'\r' || value == b' ' {
            add(
                format!("a run of {LONGEST} × 0x{value:02x}"),
                vec![value; LONGEST],
            );
        }
    }
    // Line endings alone, and almost-empty lines.
    for (name, unit) in [
        ("LF", &b"\n"[..]),
        ("CR LF", b"\r\n"),
        ("CR", b"\r"),
        ("CR CR LF", b"\r\r\n"),
        ("`a` LF", b"a\n"),
        ("LF CR", b"\n\r"),
        ("space LF", b" \n"),
    ] {
        for count in [1, 3, 1000, LONGEST / unit.len()] {
            add(format!("{count} × {name}"), unit.repeat(count));
        }
    }
    // Characters of more than one byte, whole and cut: every prefix of each, repeated, so a read can end
    // inside one anywhere.
    for (name, character) in [
        ("é", "é".as_bytes()),
        ("你", "你".as_bytes()),
        ("𐐨", "𐐨".as_bytes()),
        ("ß", "ß".as_bytes()),
        ("ΐ", "ΐ".as_bytes()),
        ("GBK 中", &[0xd6, 0xd0][..]),
        ("GBK lead 0x81", &[0x81][..]),
        ("GB18030 four bytes", &[0x81, 0x30, 0x81, 0x30][..]),
    ] {
        for cut in 1..=character.len() {
            let piece = &character[..cut];
            add(
                format!("{name} cut to {cut} of {} bytes, × 1000", character.len()),
                piece.repeat(1000),
            );
            add(
                format!("{name} cut to {cut} bytes, then LF, × 500"),
                [piece, b"\n"].concat().repeat(500),
            );
        }
    }
    // The service's own examples cut up and spliced: pieces of valid requests in orders no client sends.
    if !examples.is_empty() {
        for round in 0..40 {
            let mut spliced = Vec::new();
            while spliced.len() < 256 << (round % 9) {
                let example = rng.pick(examples);
                if example.is_empty() {
                    break;
                }
                let from = rng.below(example.len());
                let to = from + 1 + rng.below(example.len() - from);
                spliced.extend_from_slice(&example[from..to]);
            }
            spliced.truncate(LONGEST);
            add(
                format!("spliced pieces of its own examples ({round})"),
                spliced,
            );
        }
        // An example repeated until it is as long as the longest input: many requests in one read.
        for (i, example) in examples.iter().take(4).enumerate() {
            if !example.is_empty() {
                let times = LONGEST / example.len();
                add(
                    format!("its example {i} repeated {times} times"),
                    example.repeat(times.max(1)),
                );
            }
        }
    }
    // Random bytes.
    for round in 0..12 {
        let len = 1 + rng.below(LONGEST);
        let bytes = (0..len).map(|_| rng.next_u64() as u8).collect();
        add(format!("{len} random bytes ({round})"), bytes);
    }
    add("nothing".into(), Vec::new());
    out
}

/// Where to cut `input` into reads: all at once, at random places (a fixed seed), and, for a short input,
/// at every byte.
pub fn cuts(input: &[u8], rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut all = vec![Vec::new()];
    if input.len() > 1 {
        let mut random: Vec<usize> = (0..1 + rng.below(16))
            .map(|_| rng.below(input.len()))
            .collect();
        random.sort_unstable();
        all.push(random);
    }
    if (2..=256).contains(&input.len()) {
        all.push((1..input.len()).collect());
    }
    all
}
