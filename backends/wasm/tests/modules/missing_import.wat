(module
  (import "env" "not_provided" (func $f))
  (memory (export "memory") 1)
  (func (export "_start") (call $f)))
