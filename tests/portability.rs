//! Portability checked here, not hoped for: every shader, in every
//! specialisation the engine creates, goes through naga's WGSL front end,
//! validator and its SPIR-V (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (GL)
//! back ends, so a shader another platform would reject fails on this machine.
//!
//! The f16 variants are validated with the SHADER_FLOAT16 capability and
//! translated to SPIR-V, MSL (2.4) and HLSL (SM 6.2, the first with native
//! 16-bit types); GLSL gets only the f32 variants, because wgpu's GL backend
//! never offers SHADER_F16 (GL adapters run the f32 path).

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use wgkv::kernels::Spec;

fn translate(spec: &Spec, f16: bool) -> Result<(), String> {
    let src = spec.source(f16);
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| format!("parse: {}", e.emit_to_string(&src)))?;
    let caps = if f16 { Capabilities::SHADER_FLOAT16 } else { Capabilities::empty() };
    let info = Validator::new(ValidationFlags::all(), caps).validate(&module).map_err(|e| format!("validate: {}", e.emit_to_string(&src)))?;

    let spv_pipe = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
    spv::write_vec(&module, &info, &spv::Options::default(), Some(&spv_pipe)).map_err(|e| format!("SPIR-V: {e}"))?;

    let msl_opts = msl::Options { lang_version: (2, 4), ..Default::default() };
    let msl_pipe = msl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, "main".into())), ..Default::default() };
    msl::write_string(&module, &info, &msl_opts, &msl_pipe).map_err(|e| format!("MSL: {e}"))?;

    let hlsl_opts = hlsl::Options { shader_model: hlsl::ShaderModel::V6_2, ..Default::default() };
    let hlsl_pipe = hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, "main".into())) };
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &hlsl_opts, &hlsl_pipe).write(&module, &info, None).map_err(|e| format!("HLSL: {e}"))?;

    if !f16 {
        let glsl_opts = glsl::Options { version: glsl::Version::Embedded { version: 310, is_webgl: false }, ..Default::default() };
        let glsl_pipe = glsl::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into(), multiview: None };
        let mut out = String::new();
        glsl::Writer::new(&mut out, &module, &info, &glsl_opts, &glsl_pipe, naga::proc::BoundsCheckPolicies::default())
            .and_then(|mut w| w.write())
            .map_err(|e| format!("GLSL: {e}"))?;
    }
    Ok(())
}

#[test]
fn every_shader_variant_translates_to_every_backend() {
    let specs = wgkv::ops::all_specs();
    let mut failures = Vec::new();
    for spec in &specs {
        for f16 in [true, false] {
            if let Err(e) = translate(spec, f16) {
                failures.push(format!("{} {:?} consts {:?} f16={f16}: {e}", spec.kernel.name(), spec.wtype, spec.consts));
            }
        }
    }
    eprintln!("translated {} specialisations x {{f16, f32}}", specs.len());
    assert!(failures.is_empty(), "{} variants failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_kernel_has_a_specialisation_in_the_portability_list() {
    let specs = wgkv::ops::all_specs();
    for k in wgkv::kernels::Kernel::ALL {
        assert!(specs.iter().any(|s| s.kernel == *k), "kernel {} is missing from ops::all_specs()", k.name());
    }
}
