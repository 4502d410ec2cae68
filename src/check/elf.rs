//! ELF reading, the bytes of one object only: the machine type, `PT_INTERP`, `DT_NEEDED`,
//! `DT_RPATH` and `DT_RUNPATH` (through goblin). Where those libraries are found inside a
//! tree is `ldd`'s job; the view (`view`) caches what this returns for every object.

use goblin::elf::dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH};
use goblin::elf::header::{machine_to_str, EM_X86_64};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::Elf;
use goblin::strtab::Strtab;

/// What the loader needs to know about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub machine: u16,
    pub e_type: u16,
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Whether the platform (x86-64 Linux) can load it.
    pub fn is_x86_64(&self) -> bool {
        self.is_64 && self.machine == EM_X86_64
    }

    pub fn describe_arch(&self) -> String {
        format!(
            "{}-bit {}",
            if self.is_64 { 64 } else { 32 },
            machine_to_str(self.machine)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    NotElf,
    Elf(ElfInfo),
    Bad(String),
}

/// Summarise an object from its program headers and dynamic section only (what the loader
/// reads; section headers may be stripped or wrong without stopping it).
pub fn parse(bytes: &[u8]) -> Parsed {
    if !bytes.starts_with(b"\x7fELF") {
        return Parsed::NotElf;
    }
    match summarize(bytes) {
        Ok(i) => Parsed::Elf(i),
        Err(e) => Parsed::Bad(e.to_string()),
    }
}

fn summarize(bytes: &[u8]) -> goblin::error::Result<ElfInfo> {
    let header = Elf::parse_header(bytes)?;
    let container = header.container()?;
    let ctx = goblin::container::Ctx::new(container, header.endianness()?);
    let phdrs = ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)?;
    let interp = phdrs
        .iter()
        .find(|p| p.p_type == PT_INTERP && p.p_filesz > 0)
        .and_then(|p| bytes.get(p.p_offset as usize..(p.p_offset + p.p_filesz) as usize))
        .map(|b| {
            let b = b.split(|c| *c == 0).next().unwrap_or(b);
            String::from_utf8_lossy(b).into_owned()
        });
    let mut info = ElfInfo {
        is_64: container.is_big(),
        machine: header.e_machine,
        e_type: header.e_type,
        interp,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
    };
    if let Some(dynamic) = goblin::elf::dynamic::Dynamic::parse(bytes, &phdrs, ctx)? {
        let strtab = Strtab::parse(bytes, dynamic.info.strtab, dynamic.info.strsz, 0)?;
        let s = |v: u64| -> goblin::error::Result<String> {
            strtab
                .get_at(v as usize)
                .map(str::to_string)
                .ok_or_else(|| {
                    goblin::error::Error::Malformed(format!(
                        "dynamic string at {v:#x} is outside the string table"
                    ))
                })
        };
        for d in &dynamic.dyns {
            match d.d_tag {
                DT_NEEDED => info.needed.push(s(d.d_val)?),
                DT_RPATH => info
                    .rpath
                    .extend(s(d.d_val)?.split(':').map(str::to_string)),
                DT_RUNPATH => info
                    .runpath
                    .extend(s(d.d_val)?.split(':').map(str::to_string)),
                _ => {}
            }
        }
    }
    Ok(info)
}

/// Minimal ELF objects for tests: an ELF header, PT_LOAD over the whole file, an optional
/// PT_INTERP and a PT_DYNAMIC with DT_NEEDED/DT_RPATH/DT_RUNPATH entries.
#[cfg(test)]
pub mod fake {
    pub struct Spec<'a> {
        pub machine: u16,
        pub e_type: u16,
        pub interp: Option<&'a str>,
        pub needed: &'a [&'a str],
        pub rpath: Option<&'a str>,
        pub runpath: Option<&'a str>,
    }

    impl Default for Spec<'_> {
        fn default() -> Self {
            Spec {
                machine: goblin::elf::header::EM_X86_64,
                e_type: goblin::elf::header::ET_DYN,
                interp: None,
                needed: &[],
                rpath: None,
                runpath: None,
            }
        }
    }

    /// A program needing `needed`, with the standard x86-64 interpreter.
    pub fn program(needed: &[&str]) -> Vec<u8> {
        build(&Spec {
            interp: Some("/lib64/ld-linux-x86-64.so.2"),
            needed,
            ..Spec::default()
        })
    }

    /// A shared library needing `needed`.
    pub fn library(needed: &[&str]) -> Vec<u8> {
        build(&Spec {
            needed,
            ..Spec::default()
        })
    }

    /// A statically linked program.
    pub fn static_program() -> Vec<u8> {
        build(&Spec {
            e_type: goblin::elf::header::ET_EXEC,
            ..Spec::default()
        })
    }

    pub fn build(s: &Spec) -> Vec<u8> {
        use goblin::elf::dynamic::*;
        use goblin::elf::program_header::*;
        let mut strtab = vec![0u8];
        let mut add = |s: &str| -> u64 {
            let off = strtab.len() as u64;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            off
        };
        let mut dyns: Vec<(u64, u64)> = s.needed.iter().map(|n| (DT_NEEDED, add(n))).collect();
        if let Some(r) = s.rpath {
            dyns.push((DT_RPATH, add(r)));
        }
        if let Some(r) = s.runpath {
            dyns.push((DT_RUNPATH, add(r)));
        }
        let nph = 2 + s.interp.is_some() as u64;
        let ph_off = 64u64;
        let interp_off = ph_off + nph * 56;
        let interp = s.interp.map(|i| format!("{i}\0")).unwrap_or_default();
        let str_off = interp_off + interp.len() as u64;
        let dyn_off = (str_off + strtab.len() as u64 + 7) & !7;
        dyns.push((DT_STRTAB, str_off));
        dyns.push((DT_STRSZ, strtab.len() as u64));
        dyns.push((DT_NULL, 0));
        let total = dyn_off + dyns.len() as u64 * 16;

        let mut b = Vec::new();
        b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        b.extend_from_slice(&s.e_type.to_le_bytes());
        b.extend_from_slice(&s.machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // e_version
        b.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        b.extend_from_slice(&ph_off.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(&56u16.to_le_bytes());
        b.extend_from_slice(&(nph as u16).to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        let mut ph = |t: u32, off: u64, size: u64| {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&4u32.to_le_bytes()); // PF_R
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes()); // vaddr = offset
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&8u64.to_le_bytes());
        };
        ph(PT_LOAD, 0, total);
        if s.interp.is_some() {
            ph(PT_INTERP, interp_off, interp.len() as u64);
        }
        ph(PT_DYNAMIC, dyn_off, dyns.len() as u64 * 16);
        b.extend_from_slice(interp.as_bytes());
        b.extend_from_slice(&strtab);
        b.resize(dyn_off as usize, 0);
        for (t, v) in dyns {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    #[test]
    fn parses_interp_needed_and_paths() {
        let b = build(&Spec {
            interp: Some("/lib64/ld-linux-x86-64.so.2"),
            needed: &["libc.so.6", "libz.so.1"],
            rpath: Some("$ORIGIN/../lib:/opt/x"),
            runpath: Some("/r"),
            ..Spec::default()
        });
        let Parsed::Elf(i) = parse(&b) else {
            panic!("{:?}", parse(&b))
        };
        assert!(i.is_x86_64());
        assert_eq!(i.interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(i.needed, ["libc.so.6", "libz.so.1"]);
        assert_eq!(i.rpath, ["$ORIGIN/../lib", "/opt/x"]);
        assert_eq!(i.runpath, ["/r"]);
        assert_eq!(parse(b"#!/bin/sh\n"), Parsed::NotElf);
        assert!(matches!(parse(b"\x7fELF\x02"), Parsed::Bad(_)));
    }

    #[test]
    fn parses_a_real_host_binary() {
        let Ok(b) = std::fs::read("/bin/busybox") else {
            eprintln!("SKIPPED: no /bin/busybox (apt-get install busybox-static)");
            return;
        };
        let Parsed::Elf(i) = parse(&b) else { panic!() };
        assert!(i.is_x86_64() && i.interp.is_none() && i.needed.is_empty());
    }
}
