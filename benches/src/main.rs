fn main() {
    match hako_bench::main_with_args(std::env::args().collect()) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("hako-bench: {e:#}");
            std::process::exit(1);
        }
    }
}
