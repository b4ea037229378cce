//! Test fixtures every service supplies: a valid request and the reply it must get, made from a seed. The
//! generic tests (the property tests and the conformance check in `tests/service.rs`, the per-mode tests in
//! `tests/services.rs`) draw examples from every service in [`super::Service::ALL`], so a new service is
//! tested in every server mode without anyone listing it.
//!
//! The reply is written by the example's own code from what it generated (a name, a line of text), never by
//! running the service, so the tests compare the service against an independent statement of what it must do.
//!
//! Walk-through: `docs/10-adding-a-service.md`.

/// A valid request and everything the server must send for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Example {
    /// For TCP, a stream of requests (any split of it into reads must give `reply`); for UDP, one datagram.
    pub request: Vec<u8>,
    /// For TCP, everything sent on the connection, its greeting first, up to the end of the stream; for
    /// UDP, the one reply datagram.
    pub reply: Vec<u8>,
    /// The request itself asks the server to close after its reply (`hello`'s `exit`).
    pub closes: bool,
}

/// A small deterministic random number generator (SplitMix64): the same seed makes the same example, so a
/// failing case can be replayed from the seed a test prints. Not for anything that needs real randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` at least 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A few lowercase words, sometimes with a word from another script: text every service can carry.
    pub fn words(&mut self, max_words: usize) -> String {
        const WORDS: &[&str] = &[
            "hello", "world", "the", "quick", "brown", "fox", "straße", "café", "你好", "socket",
            "tcp", "udp", "stream", "a", "",
        ];
        let count = 1 + self.below(max_words.max(1));
        let words: Vec<&str> = (0..count).map(|_| *self.pick(WORDS)).collect();
        words.join(" ")
    }

    /// [`Rng::words`], cut (at a character boundary) to at most `max_bytes` bytes.
    pub fn words_within(&mut self, max_words: usize, max_bytes: usize) -> String {
        let mut text = self.words(max_words);
        let mut end = text.len().min(max_bytes);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    /// `below(n)` draws every number of `0..n`, none more than its share allows (a fixed seed: the counts
    /// are the same every run; they are within 10 % of a third), and nothing else; `below(0)` is `below(1)`.
    #[test]
    fn below_draws_every_number_under_its_bound_evenly() {
        let mut rng = Rng::new(1);
        let mut counts = [0usize; 4];
        for _ in 0..3000 {
            counts[rng.below(3).min(3)] += 1;
        }
        assert_eq!(counts[3], 0, "a number past the bound: {counts:?}");
        assert!(
            counts[..3].iter().all(|&c| (900..=1100).contains(&c)),
            "{counts:?}"
        );
        assert!((0..100).all(|_| rng.below(0) == 0 && rng.below(1) == 0));
    }

    /// Cut to a byte budget, text stays whole characters and within the budget, whatever the budget.
    #[test]
    fn words_within_cuts_at_a_character_boundary() {
        let mut multibyte = false;
        for seed in 0..200 {
            for max_bytes in 0..12 {
                let text = Rng::new(seed).words_within(6, max_bytes);
                assert!(text.len() <= max_bytes, "{text:?} over {max_bytes}");
                let whole = Rng::new(seed).words(6);
                assert!(
                    whole.starts_with(&text),
                    "{text:?} is not a cut of {whole:?}"
                );
                // The longest cut that stays whole: adding the next character would pass the budget.
                let next = whole[text.len()..].chars().next();
                assert!(
                    next.is_none_or(|c| text.len() + c.len_utf8() > max_bytes),
                    "{text:?} cut short of {max_bytes} in {whole:?}"
                );
                multibyte |= next.is_some_and(|c| c.len_utf8() > 1 && text.len() < max_bytes);
            }
        }
        assert!(
            multibyte,
            "no cut fell inside a character: the test tried nothing"
        );
    }
}
