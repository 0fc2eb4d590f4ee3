{
  "targets": [
    {
      "target_name": "vmvault_native",
      "sources": ["src/addon.c", "src/cut.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "cflags!": ["-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
