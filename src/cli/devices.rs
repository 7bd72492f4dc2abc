//! `wgkv devices [--json]`: every adapter with backend, device type,
//! f16/subgroup support, the binding/buffer limits and the kernel tuning
//! it gets.

use crate::Result;
use crate::gpu::adapters;
use crate::ops::tuning::Tuning;
use serde_json::json;

pub fn run(backend: Option<&str>, as_json: bool) -> Result<()> {
    let list = adapters(backend)?;
    let mut rows = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let info = a.get_info();
        let f = a.features();
        let l = a.limits();
        rows.push(json!({
            "index": i,
            "name": info.name,
            "backend": format!("{:?}", info.backend),
            "device_type": format!("{:?}", info.device_type),
            "driver": info.driver,
            "driver_info": info.driver_info,
            "shader_f16": f.contains(wgpu::Features::SHADER_F16),
            "subgroups": f.contains(wgpu::Features::SUBGROUP),
            "subgroup_sizes": [info.subgroup_min_size, info.subgroup_max_size],
            "timestamp_query": f.contains(wgpu::Features::TIMESTAMP_QUERY),
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
            "tuning": Tuning::for_device(info.device_type == wgpu::DeviceType::Cpu).to_json(),
        }));
    }
    if as_json {
        let stamp = crate::measure::record::Stamp::new(None, "");
        let o = json!({ "wgkv_version": stamp.wgkv_version, "git_commit": stamp.git_commit, "adapters": rows });
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
        return Ok(());
    }
    if rows.is_empty() {
        println!("no adapters found (on Linux without a GPU: apt-get install mesa-vulkan-drivers libvulkan1)");
    }
    let mib = |v: &serde_json::Value| v.as_u64().unwrap_or(0) / (1 << 20);
    for r in &rows {
        println!(
            "[{}] {} — {} {}, f16 {}, subgroups {} (sizes {}..{}), timestamps {}",
            r["index"],
            r["name"].as_str().unwrap_or(""),
            r["backend"].as_str().unwrap_or(""),
            r["device_type"].as_str().unwrap_or(""),
            yes(&r["shader_f16"]),
            yes(&r["subgroups"]),
            r["subgroup_sizes"][0],
            r["subgroup_sizes"][1],
            yes(&r["timestamp_query"]),
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, {} storage buffers/stage, workgroup storage {} KiB, {} invocations/workgroup",
            mib(&r["max_storage_buffer_binding_size"]),
            mib(&r["max_buffer_size"]),
            r["max_storage_buffers_per_shader_stage"],
            r["max_compute_workgroup_storage_size"].as_u64().unwrap_or(0) / 1024,
            r["max_compute_invocations_per_workgroup"],
        );
        println!("    tuning: {}", Tuning::for_device(r["device_type"] == "Cpu").describe());
    }
    Ok(())
}

fn yes(v: &serde_json::Value) -> &'static str {
    if v.as_bool().unwrap_or(false) { "yes" } else { "no" }
}
