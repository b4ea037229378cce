//! `Hello, World` from may_minihttp on one may worker (the TechEmpower plaintext class). Prints
//! `listening on tcp://ADDR` once bound. Usage: `may-peer PORT` (a free port: may_minihttp does not say
//! which one port 0 picked).

use may_minihttp::{HttpServer, HttpService, Request, Response};

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _request: Request, response: &mut Response) -> std::io::Result<()> {
        response.header("Content-Type: text/plain");
        response.body("Hello, World");
        Ok(())
    }
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("a port");
    may::config().set_workers(1);
    let addr = format!("127.0.0.1:{port}");
    let server = HttpServer(Hello).start(&addr).expect("bind");
    println!("listening on tcp://{addr}");
    server.join().expect("server");
}
