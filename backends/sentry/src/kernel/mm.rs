//! Copying data between the sentry and tracee memory (process_vm_readv/writev).

use crate::kernel::Kernel;
use crate::platform::Platform;

impl<P: Platform> Kernel<P> {
    pub fn read_bytes(&self, tid: i32, addr: u64, len: usize) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.plat.read_mem(tid, addr + got as u64, &mut buf[got..]) {
                Ok(0) | Err(_) => return Err(libc::EFAULT),
                Ok(n) => got += n,
            }
        }
        Ok(buf)
    }

    pub fn write_bytes(&self, tid: i32, addr: u64, data: &[u8]) -> Result<(), i32> {
        let mut done = 0;
        while done < data.len() {
            match self.plat.write_mem(tid, addr + done as u64, &data[done..]) {
                Ok(0) | Err(_) => return Err(libc::EFAULT),
                Ok(n) => done += n,
            }
        }
        Ok(())
    }

    /// A NUL-terminated string of at most `max` bytes (read page by page, so a string near the end
    /// of a mapping is fine).
    pub fn read_cstr(&self, tid: i32, addr: u64, max: usize) -> Result<String, i32> {
        if addr == 0 {
            return Err(libc::EFAULT);
        }
        let mut out = Vec::new();
        let mut a = addr;
        while out.len() < max {
            let chunk = (4096 - (a % 4096)) as usize;
            let mut buf = vec![0u8; chunk];
            let n = self
                .plat
                .read_mem(tid, a, &mut buf)
                .map_err(|_| libc::EFAULT)?;
            if n == 0 {
                return Err(libc::EFAULT);
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..i]);
                return String::from_utf8(out).map_err(|_| libc::EINVAL);
            }
            out.extend_from_slice(&buf[..n]);
            a += n as u64;
        }
        Err(libc::ENAMETOOLONG)
    }

    pub fn read_path(&self, tid: i32, addr: u64) -> Result<String, i32> {
        self.read_cstr(tid, addr, 4096)
    }

    pub fn write_val<T: Copy>(&self, tid: i32, addr: u64, v: &T) -> Result<(), i32> {
        // SAFETY: T is plain old data (libc structs).
        let b = unsafe {
            std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>())
        };
        self.write_bytes(tid, addr, b)
    }

    pub fn read_val<T: Copy>(&self, tid: i32, addr: u64) -> Result<T, i32> {
        let b = self.read_bytes(tid, addr, std::mem::size_of::<T>())?;
        // SAFETY: b has exactly size_of::<T>() bytes; T is plain old data.
        Ok(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
    }
}
