//! The control socket's request reader on arbitrary bytes, through a real
//! socket pair: a request or a clear error, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use natgw::control::socket;
use std::io::Write;
use std::os::unix::net::UnixStream;

fuzz_target!(|data: &[u8]| {
    let Ok((a, mut b)) = UnixStream::pair() else { return };
    // Within the socket buffer, so the write does not wait for the reader.
    let data = &data[..data.len().min(64 * 1024)];
    if b.write_all(data).is_err() {
        return;
    }
    drop(b);
    if let Err(e) = socket::read_request(&a) {
        assert!(!e.is_empty());
    }
});
