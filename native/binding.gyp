{
  "targets": [
    {
      "target_name": "batched_udp",
      "sources": ["batched_udp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
