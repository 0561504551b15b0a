//! What the eBPF objects call, read from their relocations (no root needed).

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

/// The names each section of `elf` calls or refers to through relocations.
fn relocation_targets(elf: &[u8]) -> Vec<(String, String)> {
    let file = object::File::parse(elf).expect("an ELF object");
    let mut targets = Vec::new();
    for section in file.sections() {
        let section_name = section.name().unwrap_or("?").to_string();
        for (_, relocation) in section.relocations() {
            if let RelocationTarget::Symbol(index) = relocation.target() {
                let symbol = file.symbol_by_index(index).expect("relocation symbol");
                let name = symbol.name().unwrap_or("?").to_string();
                targets.push((section_name.clone(), name));
            }
        }
    }
    targets
}

/// Compiler builtins that LLVM calls for memory operations it does not
/// expand: in BPF they are byte loops behind a BPF-to-BPF call. The
/// director once zeroed an 11-byte struct through `memset` at the start of
/// every packet, ~17 ns of its ~80 (docs/design/director-cost.md).
const BUILTINS: [&str; 5] = ["memset", "memcpy", "memmove", "memcmp", "bcmp"];

/// Asserts that the programs of `elf` (named `object` in messages) call
/// none of [`BUILTINS`].
fn assert_no_builtin_calls(object: &str, elf: &[u8]) {
    let targets = relocation_targets(elf);
    assert!(
        targets.iter().any(|(section, _)| section == "xdp"),
        "{object}: no relocations read from the programs' section"
    );
    let calls: Vec<_> = targets
        .iter()
        .filter(|(_, name)| BUILTINS.contains(&name.as_str()))
        .collect();
    assert!(calls.is_empty(), "{object} calls builtins: {calls:?}");
}

#[test]
fn the_director_calls_no_memory_builtins() {
    assert_no_builtin_calls("director", director_xdp::director_object());
}

#[test]
fn the_redirect_module_calls_no_memory_builtins() {
    assert_no_builtin_calls("redirect module", director_xdp::redirect_object());
}

/// The XDP programs of `elf`: the global functions of its `xdp` section.
fn xdp_programs(elf: &[u8]) -> Vec<String> {
    let file = object::File::parse(elf).expect("an ELF object");
    let mut programs: Vec<String> = file
        .symbols()
        .filter(|s| s.is_global() && s.kind() == object::SymbolKind::Text)
        .filter(|s| {
            s.section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .is_some_and(|section| section.name() == Ok("xdp"))
        })
        .map(|s| s.name().expect("a symbol name").to_string())
        .collect();
    programs.sort();
    programs
}

/// Built as users run them, the objects hold their programs and nothing
/// for the benchmark.
#[cfg(not(feature = "bench"))]
#[test]
fn the_objects_carry_no_benchmark_program_without_the_bench_feature() {
    let mut director = director_xdp::PROGRAMS.to_vec();
    director.sort();
    assert_eq!(xdp_programs(director_xdp::director_object()), director);
    assert_eq!(
        xdp_programs(director_xdp::redirect_object()),
        [director_xdp::REDIRECT_PROGRAM]
    );
}

/// With the `bench` feature (`make bench`), the references are there too.
#[cfg(feature = "bench")]
#[test]
fn the_bench_feature_adds_the_benchmark_programs() {
    let mut director = director_xdp::PROGRAMS.to_vec();
    director.sort();
    assert_eq!(xdp_programs(director_xdp::director_object()), director);
    for name in director_xdp::BENCH_PROGRAMS {
        assert!(director.contains(&name), "{name} in the director's object");
    }
    assert_eq!(
        xdp_programs(director_xdp::redirect_object()),
        [
            director_xdp::BENCH_FLOOR_PROGRAM,
            director_xdp::REDIRECT_PROGRAM
        ]
    );
}
