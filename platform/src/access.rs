//! Who may call each method, read from the `(shop.common.v1.access)` option of
//! the compiled contracts. The gateway and every service use this one table.

use std::collections::HashMap;

use prost_reflect::{DescriptorPool, MethodDescriptor};

/// Mirrors `shop.common.v1.Access`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Public,
    User,
    Admin,
    /// Also what an undeclared method gets: deny by default.
    Internal,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::User => "user",
            Self::Admin => "admin",
            Self::Internal => "internal",
        }
    }
}

/// The shopmesh descriptors, options and extensions included.
pub fn descriptor_pool() -> Result<DescriptorPool, prost_reflect::DescriptorError> {
    DescriptorPool::decode(shopmesh_proto::FILE_DESCRIPTOR_SET)
}

/// The access a method declares.
pub fn method_access(pool: &DescriptorPool, method: &MethodDescriptor) -> Access {
    let Some(extension) = pool.get_extension_by_name("shop.common.v1.access") else {
        return Access::Internal;
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Access::Internal;
    }
    match options.get_extension(&extension).as_enum_number() {
        Some(1) => Access::Public,
        Some(2) => Access::User,
        Some(3) => Access::Admin,
        _ => Access::Internal,
    }
}

/// Every shopmesh method by its gRPC path (`/shop.product.v1.ProductService/GetProduct`).
pub fn access_table(pool: &DescriptorPool) -> HashMap<String, Access> {
    let mut table = HashMap::new();
    for service in pool.services() {
        if !service.package_name().starts_with("shop.") {
            continue;
        }
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            table.insert(path, method_access(pool, &method));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_read_from_the_contracts() {
        let table = access_table(&descriptor_pool().unwrap());
        assert_eq!(
            table["/shop.product.v1.ProductService/GetProduct"],
            Access::Public
        );
        assert_eq!(
            table["/shop.product.v1.ProductService/CreateProduct"],
            Access::Admin
        );
        assert_eq!(table["/shop.auth.v1.AuthService/Logout"], Access::User);
        assert_eq!(
            table["/shop.user.v1.UserService/CreateProfile"],
            Access::Internal
        );
        assert!(table.len() > 60);
    }
}
