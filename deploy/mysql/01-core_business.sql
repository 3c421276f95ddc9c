-- core_business: the source of truth (MySQL 8 or MariaDB 10.11+), the schema and demo data of
-- the seed system. Debezium streams these five tables to the Kafka topics cdc.<table>.
--
-- Load it into the core_business database:
--   * Docker Compose: the mysql image runs it at first start, inside MYSQL_DATABASE.
--   * by hand:        mysql core_business < deploy/mysql/01-core_business.sql
-- There is no USE statement on purpose, so tests can load it into a database of their own.
--
-- Portable on purpose: no utf8mb4_0900_* collations (MySQL only), no expression defaults, no
-- row aliases in ON DUPLICATE KEY UPDATE, no DELIMITER blocks. Idempotent: CREATE TABLE IF NOT
-- EXISTS, and the demo rows are inserted with ON DUPLICATE KEY UPDATE id = id (a no-op).
--
-- Conventions: times are UTC, DATETIME(3) (the servers run with time_zone '+00:00');
-- coordinates are WGS84 degrees; geofence_radius is in metres. What Debezium emits for them
-- (decimal.handling.mode=string, time.precision.mode=connect): DECIMAL as a string,
-- DATETIME as epoch milliseconds, DATE as days since 1970-01-01, BOOLEAN (TINYINT(1)) as 0/1,
-- JSON as a string.

SET NAMES utf8mb4;

CREATE TABLE IF NOT EXISTS accounts (
    id              BIGINT       NOT NULL AUTO_INCREMENT,
    tenant_id       VARCHAR(64)  NOT NULL,
    name            VARCHAR(255) NOT NULL,
    account_type    VARCHAR(32)  NOT NULL DEFAULT 'standard',
    settings        JSON         NULL,
    created_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                 ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY accounts_tenant (tenant_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS customers (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    tenant_id       VARCHAR(64)   NOT NULL,
    account_id      BIGINT        NULL,
    name            VARCHAR(255)  NOT NULL,
    address         VARCHAR(512)  NULL,
    lat             DECIMAL(10,7) NOT NULL,
    lng             DECIMAL(10,7) NOT NULL,
    geofence_radius INT           NOT NULL DEFAULT 100,
    customer_type   VARCHAR(32)   NULL,
    contact_name    VARCHAR(255)  NULL,
    contact_phone   VARCHAR(64)   NULL,
    contact_email   VARCHAR(255)  NULL,
    active          BOOLEAN       NOT NULL DEFAULT TRUE,
    created_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                  ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY customers_tenant (tenant_id),
    KEY customers_account (account_id),
    CONSTRAINT customers_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id),
    CONSTRAINT customers_lat_range CHECK (lat BETWEEN -90 AND 90),
    CONSTRAINT customers_lng_range CHECK (lng BETWEEN -180 AND 180),
    CONSTRAINT customers_radius_positive CHECK (geofence_radius > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS products (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    tenant_id       VARCHAR(64)   NOT NULL,
    sku             VARCHAR(64)   NOT NULL,
    name            VARCHAR(255)  NOT NULL,
    description     TEXT          NULL,
    unit_price      DECIMAL(12,2) NOT NULL DEFAULT 0.00,
    weight_kg       DECIMAL(10,3) NULL,
    active          BOOLEAN       NOT NULL DEFAULT TRUE,
    created_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                  ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY products_tenant_sku (tenant_id, sku)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS orders (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    tenant_id       VARCHAR(64)   NOT NULL,
    customer_id     BIGINT        NOT NULL,
    order_number    VARCHAR(64)   NOT NULL,
    status          ENUM('pending', 'confirmed', 'in_transit', 'delivered', 'cancelled')
                                  NOT NULL DEFAULT 'pending',
    total           DECIMAL(12,2) NOT NULL DEFAULT 0.00,
    currency        CHAR(3)       NOT NULL DEFAULT 'USD',
    scheduled_date  DATE          NULL,
    -- [{"product_id": 1, "quantity": 2, "unit_price": "5.50"}, ...]
    items           JSON          NULL,
    notes           TEXT          NULL,
    created_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                  ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY orders_tenant_number (tenant_id, order_number),
    KEY orders_customer (customer_id),
    KEY orders_tenant_date (tenant_id, scheduled_date),
    CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT orders_total_nonnegative CHECK (total >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS users (
    id              BIGINT        NOT NULL AUTO_INCREMENT,
    tenant_id       VARCHAR(64)   NOT NULL,
    email           VARCHAR(255)  NOT NULL,
    -- argon2id, PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash   VARCHAR(255)  NOT NULL,
    name            VARCHAR(255)  NOT NULL DEFAULT '',
    role            ENUM('admin', 'dispatcher', 'driver') NOT NULL DEFAULT 'dispatcher',
    -- For role 'driver': the FleetPulse driver (uuid) this login belongs to.
    driver_id       CHAR(36)      NULL,
    active          BOOLEAN       NOT NULL DEFAULT TRUE,
    created_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      DATETIME(3)   NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                                  ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY users_tenant_email (tenant_id, email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------
-- Demo data (seed README: tenants tenant-1 and tenant-2, five customers, two admins)
-- ---------------------------------------------------------------------------------------------

INSERT INTO accounts (id, tenant_id, name, account_type, settings) VALUES
    (1, 'tenant-1', 'Tenant One', 'enterprise', '{"timezone": "America/New_York", "units": "metric"}'),
    (2, 'tenant-2', 'Tenant Two', 'standard', '{"timezone": "America/New_York", "units": "metric"}')
ON DUPLICATE KEY UPDATE id = id;

-- Locations, geofence radii (m) and types exactly as in the seed README's "Test Customers".
INSERT INTO customers
    (id, tenant_id, account_id, name, address, lat, lng, geofence_radius, customer_type,
     contact_name, contact_phone, contact_email)
VALUES
    (1, 'tenant-1', 1, 'Downtown Warehouse', '100 Broad St, New York, NY 10004',
     40.7128000, -74.0060000, 150, 'warehouse',
     'Maria Lopez', '+1-212-555-0101', 'receiving@downtown.example'),
    (2, 'tenant-1', 1, 'Midtown Office', '350 5th Ave, New York, NY 10118',
     40.7549000, -73.9840000, 100, 'office',
     'David Chen', '+1-212-555-0102', 'frontdesk@midtown.example'),
    (3, 'tenant-1', 1, 'Brooklyn Store', '445 Albee Square W, Brooklyn, NY 11201',
     40.6860000, -73.9770000, 100, 'retail',
     'Aisha Khan', '+1-718-555-0103', 'store@brooklyn.example'),
    (4, 'tenant-2', 2, 'Queens Distribution', '188-02 Jamaica Ave, Queens, NY 11423',
     40.7282000, -73.7949000, 200, 'warehouse',
     'Tom Becker', '+1-718-555-0104', 'dock@queens.example'),
    (5, 'tenant-2', 2, 'Bronx Retail', '1750 E Gun Hill Rd, Bronx, NY 10469',
     40.8370000, -73.8654000, 100, 'retail',
     'Nina Rossi', '+1-718-555-0105', 'shop@bronx.example')
ON DUPLICATE KEY UPDATE id = id;

INSERT INTO products (id, tenant_id, sku, name, description, unit_price, weight_kg) VALUES
    (1, 'tenant-1', 'WTR-20L', 'Water jug 20 L', 'Returnable drinking water jug', 8.50, 20.000),
    (2, 'tenant-1', 'PLT-STD', 'Standard pallet', 'Mixed goods pallet, 120 x 80 cm', 145.00, 350.000),
    (3, 'tenant-1', 'BOX-SML', 'Small parcel', 'Parcel up to 5 kg', 12.00, 5.000),
    (4, 'tenant-2', 'OFF-PPR', 'Office paper, 5 reams', 'A4 80 g/m2', 24.90, 12.500),
    (5, 'tenant-2', 'CLN-KIT', 'Cleaning kit', 'Janitorial supplies kit', 39.00, 7.200)
ON DUPLICATE KEY UPDATE id = id;

INSERT INTO orders
    (id, tenant_id, customer_id, order_number, status, total, currency, scheduled_date, items,
     notes)
VALUES
    (1, 'tenant-1', 1, 'ORD-1001', 'confirmed', 290.00, 'USD', '2026-02-07',
     '[{"product_id": 2, "quantity": 2, "unit_price": "145.00"}]', 'Dock 3, before noon'),
    (2, 'tenant-1', 2, 'ORD-1002', 'pending', 85.00, 'USD', '2026-02-07',
     '[{"product_id": 1, "quantity": 10, "unit_price": "8.50"}]', NULL),
    (3, 'tenant-1', 3, 'ORD-1003', 'in_transit', 36.00, 'USD', '2026-02-07',
     '[{"product_id": 3, "quantity": 3, "unit_price": "12.00"}]', 'Ring the bell at the back'),
    (4, 'tenant-2', 4, 'ORD-2001', 'confirmed', 249.00, 'USD', '2026-02-07',
     '[{"product_id": 4, "quantity": 10, "unit_price": "24.90"}]', NULL),
    (5, 'tenant-2', 5, 'ORD-2002', 'delivered', 78.00, 'USD', '2026-02-06',
     '[{"product_id": 5, "quantity": 2, "unit_price": "39.00"}]', NULL)
ON DUPLICATE KEY UPDATE id = id;

-- Password 'admin123' for both, argon2id (argon2-cffi PasswordHasher defaults).
INSERT INTO users (id, tenant_id, email, password_hash, name, role) VALUES
    (1, 'tenant-1', 'admin@tenant1.com',
     '$argon2id$v=19$m=65536,t=3,p=4$lKTwCui5A3tp7PP/TG+LXg$Ju+GKkrUOzCLRYK8rqzwyoCPQQUtJHqypr8vZ2TU+CI',
     'Admin Tenant 1', 'admin'),
    (2, 'tenant-2', 'admin@tenant2.com',
     '$argon2id$v=19$m=65536,t=3,p=4$QHWx4OEHylUreUDB7pQmTA$hgPWks981zsPqE6qL/2ufkLMtRIil9EKiFyfMUn2R8w',
     'Admin Tenant 2', 'admin')
ON DUPLICATE KEY UPDATE id = id;
