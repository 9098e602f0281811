//! plumb-cni's shared part: one blocking HTTP request to plumbd over its unix socket, used by
//! the CNI plugin `plumb-cni` and the OCI hook `plumb-oci-hook`.

pub mod http;
