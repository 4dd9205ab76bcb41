//! IR text parser (and verifier). A graph that parses must print and parse again to
//! the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = nnc_ir::parse(text) {
        let printed = nnc_ir::print_with_data(&g);
        let again = nnc_ir::parse(&printed).expect("printed graph must parse");
        assert_eq!(nnc_ir::print_with_data(&again), printed, "print/parse round-trip");
    }
});
