//! Properties of the service, over generated input: any split of a stream into reads gives the reply of
//! the whole stream; replies stay within the bounds the reactor relies on; no input panics.

mod common;

use common::feed_in_pieces;
use proptest::prelude::*;
use socklab::service::Service;

/// Text that exercises every path: ASCII, multi-byte characters (some that grow when uppercased), and
/// bytes that are not UTF-8 at all.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[a-z ]{0,8}".prop_map(String::into_bytes),
        2 => prop::sample::select(vec!["ß", "é", "你", "ΐ", "ɐ", "ﬗ", "ŉ", "\u{10428}"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_gives_the_reply_of_the_whole_stream(input in stream_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        for service in [Service::Upper, Service::Echo] {
            prop_assert_eq!(feed_in_pieces(service.session(), &input, &cuts), service.reply_to_stream(&input));
        }
    }

    #[test]
    fn valid_text_is_uppercased_exactly_as_std_does(text in "\\PC{0,64}") {
        prop_assert_eq!(Service::Upper.reply_to_stream(text.as_bytes()), text.to_uppercase().into_bytes());
    }

    #[test]
    fn replies_stay_within_the_bounds(input in stream_bytes()) {
        for service in [Service::Upper, Service::Echo] {
            let mut session = service.session();
            let mut out = Vec::new();
            session.feed(&input, &mut out);
            prop_assert!(out.len() <= service.max_output(input.len()));
            let mut reply = Vec::new();
            service.datagram(&input, &mut reply);
            prop_assert!(reply.len() <= input.len(), "a datagram reply grew");
        }
    }

    #[test]
    fn max_input_fits_its_room(room in 0usize..10_000_000) {
        for service in [Service::Upper, Service::Echo] {
            prop_assert!(service.max_output(service.max_input(room)) <= room || service.max_input(room) == 0);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_keep_the_ascii_uppercased(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let reply = Service::Upper.reply_to_stream(&input);
        // Removing every non-ASCII byte from both sides leaves the ASCII of the input, uppercased.
        let ascii_in: Vec<u8> = input.iter().filter(|b| b.is_ascii()).map(u8::to_ascii_uppercase).collect();
        let ascii_out: Vec<u8> = reply.iter().copied().filter(u8::is_ascii).collect();
        // Uppercasing non-ASCII letters may add ASCII (ŉ → ʼN), never remove it.
        prop_assert!(is_subsequence(&ascii_in, &ascii_out));
    }
}

fn is_subsequence(needle: &[u8], hay: &[u8]) -> bool {
    let mut it = hay.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}
