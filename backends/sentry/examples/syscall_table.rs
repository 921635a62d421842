//! Print the sentry's x86_64 syscall compatibility table (markdown), as carried by
//! docs/backends/sentry.md between the `syscall-table` markers.
fn main() {
    print!("{}", hako_sentry::syscalls::table_markdown());
}
