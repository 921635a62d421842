;; Grows linear memory by 128 MiB: exit 3 when the growth is refused, 0 when it succeeds.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 2048)) (i32.const -1))
      (then (call $exit (i32.const 3))))
    (call $exit (i32.const 0))))
