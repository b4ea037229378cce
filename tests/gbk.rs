//! `--encoding gbk` against a live server: GBK text whose characters have ASCII-letter trail bytes comes back
//! intact with its Latin letters uppercased, however TCP splits it, and in a UDP datagram; and the property
//! that any split of a stream gives the reply of the whole stream.

#[macro_use]
mod common;

use common::*;
use proptest::prelude::*;
use socklab::encoding::Encoding;
use socklab::server::config::Config;
use socklab::service::{Service, ServiceOptions};
use std::io::Write;
use std::time::Duration;

/// 歡 9A 67, 說 D5 66, 時 95 72, 發 B0 6C, 謝 D6 78: every one has a lowercase ASCII letter as its trail byte.
const TEXT: &str = "歡迎 hello, 說時 world, 發 謝謝 ok\n";
const UPPER: &str = "歡迎 HELLO, 說時 WORLD, 發 謝謝 OK\n";

fn gbk(text: &str) -> Vec<u8> {
    Encoding::Gbk.encode(text).unwrap().into_owned()
}

#[test]
fn the_characters_really_have_letter_trail_bytes() {
    for c in ["歡", "說", "時", "發", "謝"] {
        let bytes = gbk(c);
        assert_eq!(bytes.len(), 2);
        assert!(bytes[1].is_ascii_lowercase(), "{c}: {bytes:02x?}");
    }
}

each_mode! {
    fn gbk_over_tcp_split_at_every_position_comes_back_intact(mode) {
        let server = start_mode(mode, Config {
            encoding: Encoding::Gbk,
            ..config()
        });
        let input = gbk(TEXT);
        let expected = gbk(UPPER);
        let mut client = connect(server.addr);
        client.set_nodelay(true).unwrap();
        for cut in 0..=input.len() {
            client.write_all(&input[..cut]).unwrap();
            // A pause so the two halves are (almost always) separate reads; correctness does not depend on it.
            std::thread::sleep(Duration::from_millis(5));
            client.write_all(&input[cut..]).unwrap();
            let reply = read_n(&mut client, expected.len());
            assert_eq!(reply, expected, "{mode}: cut at {cut}");
            assert_eq!(Encoding::Gbk.decode(&reply), UPPER);
        }
        let udp = udp_client(server.addr);
        udp.send_to(&gbk("說 hi"), server.addr).unwrap();
        let mut buf = [0; 2048];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], gbk("說 HI"), "{mode}: udp");
        drop(client);
        server.stop();
    }
}

#[test]
fn gbk_over_udp_and_with_the_binary() {
    let server = spawn_binary(&["--encoding", "gbk"]);
    let client = udp_client(server.addr);
    client.send_to(&gbk("說 hi"), server.addr).unwrap();
    let mut buf = [0; 2048];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], gbk("說 HI"));
    // Bytes that are not GBK pass through, and a truncated character at the end of a datagram too.
    client.send_to(b"\xffa\x81", server.addr).unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\xffA\x81");
    let mut tcp = connect(server.addr);
    tcp.write_all(&gbk(TEXT)).unwrap();
    assert_eq!(read_n(&mut tcp, gbk(UPPER).len()), gbk(UPPER));
}

#[test]
fn utf8_mode_would_corrupt_the_same_bytes() {
    // Why the flag exists: without it, 說 (D5 66) comes back as D5 46, which is 誇.
    let server = spawn_binary(&[]);
    let mut client = connect(server.addr);
    client.write_all(&gbk("說")).unwrap();
    assert_eq!(Encoding::Gbk.decode(&read_n(&mut client, 2)), "誇");
}

/// GBK text, GB18030 four-byte sequences, and bytes that are not GBK at all.
fn gbk_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[a-zA-Z ]{0,8}".prop_map(String::into_bytes),
        3 => prop::sample::select(vec!["歡", "說", "時", "發", "謝", "你好", "€"]).prop_map(gbk),
        1 => Just(vec![0x90, 0x30, 0x81, 0x30]),
        1 => Just(vec![0x81, 0x30, 0x81]),
        2 => prop::collection::vec(any::<u8>(), 0..5),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_split_gives_the_reply_of_the_whole_stream(input in gbk_stream(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let options = ServiceOptions { encoding: Encoding::Gbk, ..ServiceOptions::default() };
        let whole = Service::Upper.reply_to_stream_with(&options, &input);
        prop_assert_eq!(feed_in_pieces(Service::Upper.session_with(&options), &input, &cuts), whole.clone());
        // Same length, only ASCII lowercase letters changed, and encoding_rs reads the same text with its
        // ASCII letters uppercased: no character was touched.
        prop_assert_eq!(whole.len(), input.len());
        for (i, o) in input.iter().zip(&whole) {
            prop_assert!(i == o || (i.is_ascii_lowercase() && *o == i.to_ascii_uppercase()));
        }
        let expected: String = Encoding::Gbk.decode(&input).chars().map(|c| c.to_ascii_uppercase()).collect();
        prop_assert_eq!(Encoding::Gbk.decode(&whole), expected);
    }
}
