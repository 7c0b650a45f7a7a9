//! The VPC file loader on arbitrary text: an error that names the file, or a
//! VPC; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use natgw::control::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = config::parse("fuzz.toml", text) {
        assert!(e.to_string().contains("fuzz.toml"), "an error that does not name the file: {e}");
    }
});
