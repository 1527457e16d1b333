//! Deterministic demo catalog: a two-level category tree and 1,200 products.
//!
//! Everything derives from one fixed PRNG seed and fixed timestamps, so the
//! catalog is byte-for-byte identical on every call and every machine. That
//! lets search, facet and pagination tests assert on concrete names and counts.

use chrono::{DateTime, Utc};
use uuid::{Builder, Uuid};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedCategory {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub price_minor: i64,
    pub currency_code: &'static str,
    pub attributes: Vec<(String, String)>,
    pub image_urls: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub initial_stock: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub categories: Vec<SeedCategory>,
    pub products: Vec<SeedProduct>,
}

const SEED: u64 = 0x5EED_F00D_CAFE_2025;
const PRODUCT_COUNT: usize = 1_200;
/// Search tests rely on one name with no model suffix, so it can match exactly.
pub const EXACT_MATCH_NAME: &str = "Auralis Wireless Headphones";
/// 2024-12-01T00:00:00Z: categories predate every product, so their v7 ids sort first.
const CATEGORY_EPOCH_MS: u64 = 1_733_011_200_000;
/// 2025-01-01T00:00:00Z: products are created over the 365 days before 2026-01-01.
const WINDOW_START_MS: u64 = 1_735_689_600_000;
const WINDOW_MS: u64 = 365 * 24 * 60 * 60 * 1_000;
const IMAGE_BASE: &str = "https://images.shopmesh.example/products";
const CLOSERS: &[&str] = &[
    "Free returns within 30 days.",
    "Ships in recyclable, plastic-free packaging.",
    "A best seller with shopmesh customers.",
    "Order by 2 pm for next-day delivery.",
];

/// Root categories: display name and SKU prefix.
const ROOTS: &[(&str, &str)] = &[
    ("Electronics", "EL"),
    ("Home & Kitchen", "HK"),
    ("Sports & Outdoors", "SP"),
    ("Fashion", "FA"),
    ("Books", "BK"),
    ("Toys & Games", "TG"),
];

/// One leaf category and the vocabulary its products are built from.
/// Word lists are `|`-separated so each table stays one line per field.
struct Leaf {
    /// Root index into `ROOTS`, SKU code, display name.
    category: (usize, &'static str, &'static str),
    /// Name template over `{b}` brand, `{t}` type, `{v}` variant. Templates
    /// without `{b}` (book titles) get the brand (publisher) as an attribute only.
    fmt: &'static str,
    brands: &'static str,
    types: &'static str,
    variants: &'static str,
    /// Whole-dollar range; cents are added when pricing.
    price: (i64, i64),
    /// `key=v1|v2; key=...` facets. An empty value list means "use the variant",
    /// so a "28 cm" skillet is also faceted as size 28 cm.
    attrs: &'static str,
    /// Completes the sentence "<name> ...".
    about: &'static str,
    features: &'static str,
}

const LEAVES: &[Leaf] = &[
    Leaf {
        category: (0, "HEAD", "Headphones"),
        fmt: "{b} {t} {v}",
        brands: "Auralis|Sonvek|Kestrel|Noma",
        types: "Wireless Noise-Cancelling Headphones|True Wireless Earbuds|Wireless Over-Ear Headphones|Sport Wireless Earbuds",
        variants: "WH-400|X2|Pro 3|Lite",
        price: (19, 399),
        attrs: "colour=Black|White|Navy|Sand; connectivity=Bluetooth 5.3|Bluetooth 5.0|Bluetooth + 3.5 mm",
        about: "delivers rich, detailed wireless sound over bluetooth",
        features: "active noise cancelling|up to 30 hours of battery life|a low-latency gaming mode|fast USB-C charging|a sweat-resistant IPX4 design|multipoint bluetooth pairing",
    },
    Leaf {
        category: (0, "SPKR", "Speakers"),
        fmt: "{b} {t} {v}",
        brands: "Auralis|Boomfield|Kestrel|Vanta",
        types: "Portable Bluetooth Speaker|Waterproof Party Speaker|Smart Speaker|Bookshelf Speakers",
        variants: "S1|S3|Max|Mini",
        price: (29, 599),
        attrs: "colour=Black|Grey|Blue|Red; connectivity=Bluetooth|Wi-Fi + Bluetooth|Wired",
        about: "fills any room with clear, punchy sound",
        features: "an IP67 waterproof and dustproof build|up to 20 hours of playtime|stereo pairing with a second speaker|a built-in speakerphone|deep, room-filling bass|Wi-Fi multi-room support",
    },
    Leaf {
        category: (0, "LAPT", "Laptops"),
        fmt: "{b} {t} {v}",
        brands: "Lumen|Corvex|Arclight|Tessera",
        types: "Ultrabook|Gaming Laptop|2-in-1 Laptop|Business Laptop",
        variants: "A5|X7|Pro 14|Flex 15",
        price: (399, 2999),
        attrs: "memory=8 GB|16 GB|32 GB; storage=256 GB SSD|512 GB SSD|1 TB SSD; colour=Silver|Space Grey|Black",
        about: "handles work, study and play with a fast processor and an all-day battery",
        features: "a bright 1080p IPS display|a backlit keyboard|Wi-Fi 6 and bluetooth 5.2|a fingerprint reader|up to 12 hours of battery life|Thunderbolt 4 and USB-C ports",
    },
    Leaf {
        category: (0, "PHON", "Phones"),
        fmt: "{b} {t} {v}",
        brands: "Nexa|Orbital|Pixelon|Quanta",
        types: "Smartphone|5G Smartphone|Rugged Smartphone|Foldable Phone",
        variants: "A15|S24|Note 9|Lite",
        price: (149, 1499),
        attrs: "capacity=64 GB|128 GB|256 GB|512 GB; colour=Black|Silver|Blue|Green",
        about: "keeps you connected with a sharp OLED screen and a capable triple camera",
        features: "5G connectivity|a 6.5-inch OLED display|a 50 MP main camera|wireless charging|an IP68 waterproof rating|two days of battery life",
    },
    Leaf {
        category: (0, "CAMR", "Cameras"),
        fmt: "{b} {t} {v}",
        brands: "Optiq|Halden|Veyra|Strata",
        types: "Mirrorless Camera|Action Camera|Instant Camera|Compact Digital Camera",
        variants: "M10|Z5|One|Go 4",
        price: (79, 2499),
        attrs: "colour=Black|Silver|White; resolution=12 MP|20 MP|24 MP|45 MP",
        about: "captures sharp photos and smooth 4K video in any light",
        features: "fast hybrid autofocus|in-body image stabilisation|4K video at 60 fps|a waterproof housing rated to 10 m|Wi-Fi and bluetooth photo transfer|a flip-out touchscreen",
    },
    Leaf {
        category: (0, "SMRT", "Smart Home"),
        fmt: "{b} {t} {v}",
        brands: "Homely|Nestor|Brightloop|Casa",
        types: "Smart Plug|Video Doorbell|Smart Thermostat|Indoor Security Camera",
        variants: "2|3|Pro|Mini",
        price: (19, 299),
        attrs: "connectivity=Wi-Fi|Zigbee|Thread|Matter; colour=White|Black",
        about: "makes your home smarter and works with Alexa, Google Home and Apple Home",
        features: "hands-free voice control|easy app setup|energy monitoring|instant motion alerts|end-to-end encryption|schedules and automations",
    },
    Leaf {
        category: (1, "COOK", "Cookware"),
        fmt: "{b} {v} {t}",
        brands: "Ferro|Copperline|Hearthstone|Mesa",
        types: "Cast Iron Skillet|Nonstick Frying Pan|Stainless Steel Saucepan|Carbon Steel Wok",
        variants: "20 cm|24 cm|28 cm|30 cm",
        price: (19, 249),
        attrs: "size=; lid=With lid|Without lid",
        about: "cooks evenly from the first sear to the final simmer",
        features: "even heat distribution|an oven-safe build rated to 260 C|compatibility with induction, gas and electric hobs|a comfortable stay-cool handle|dishwasher-safe construction|a lifetime warranty",
    },
    Leaf {
        category: (1, "COFF", "Coffee & Tea"),
        fmt: "{b} {t} {v}",
        brands: "Crema|Brewhaus|Kettleworks|Morrow",
        types: "Espresso Machine|Burr Coffee Grinder|Electric Gooseneck Kettle|Pour-Over Coffee Maker",
        variants: "Classic|Barista|Pro|Compact",
        price: (29, 899),
        attrs: "colour=Black|Brushed Steel|White|Matte Green; capacity=0.6 L|1.0 L|1.7 L",
        about: "brings cafe-quality coffee and tea to your kitchen counter",
        features: "precise temperature control|a built-in milk frother|40 grind settings|an auto shut-off for safety|a removable, dishwasher-safe water tank|a programmable brew timer",
    },
    Leaf {
        category: (1, "FURN", "Furniture"),
        fmt: "{b} {v} {t}",
        brands: "Nordhaven|Oakridge|Linea|Bramble",
        types: "3-Seater Sofa|Dining Table|Bookcase|Ergonomic Office Chair",
        variants: "Oslo|Bergen|Malmo|Aalto",
        price: (79, 1999),
        attrs: "material=Solid Oak|Walnut Veneer|Powder-Coated Steel|Linen Blend; colour=Natural|Charcoal|Sage|Cream",
        about: "combines clean Scandinavian lines with everyday comfort",
        features: "sturdy solid-wood construction|tool-free assembly in under 30 minutes|a stain-resistant finish|adjustable levelling feet|generous storage space|a 10-year frame warranty",
    },
    Leaf {
        category: (1, "BEDD", "Bedding"),
        fmt: "{b} {t}, {v}",
        brands: "Dreamweave|Loomhouse|Cloudnest|Halcyon",
        types: "Cotton Percale Duvet Cover|Linen Sheet Set|Down Alternative Duvet|Memory Foam Pillow",
        variants: "Single|Double|Queen|King",
        price: (19, 349),
        attrs: "size=; colour=White|Grey|Sage|Blush",
        about: "turns your bed into a cool, breathable retreat for better sleep",
        features: "100% long-staple cotton|a breathable, temperature-regulating weave|hypoallergenic filling|machine-washable fabric|deep-pocket fitted sheets|OEKO-TEX certified materials",
    },
    Leaf {
        category: (2, "RUNN", "Running"),
        fmt: "{b} {t} {v}",
        brands: "Stride|Velora|Trailfox|Pacer",
        types: "Road Running Shoes|Trail Running Shoes|Racing Flats|Waterproof Trail Shoes",
        variants: "Glide 3|Apex|Tempo 2|Ultra",
        price: (49, 249),
        attrs: "size=UK 6|UK 7|UK 8|UK 9|UK 10|UK 11; colour=Black|Volt|Blue|Orange",
        about: "keeps you light and fast, from park runs to marathon day",
        features: "a responsive foam midsole|a breathable engineered mesh upper|a grippy rubber outsole|reflective details for night runs|a waterproof membrane|a carbon-fibre plate",
    },
    Leaf {
        category: (2, "CYCL", "Cycling"),
        fmt: "{b} {t} {v}",
        brands: "Velotek|Cadence|Ridgeline|Spoke & Co",
        types: "Road Bike|Gravel Bike|Hybrid Bike|Electric Bike",
        variants: "R1|Sport|Comp|Elite",
        price: (399, 3999),
        attrs: "size=S|M|L|XL; colour=Black|Red|Teal|Grey; material=Aluminium|Carbon",
        about: "rolls smoothly over tarmac, gravel and city streets",
        features: "a lightweight aluminium frame|hydraulic disc brakes|a Shimano 2x11 drivetrain|tubeless-ready wheels|internal cable routing|mounts for racks and mudguards",
    },
    Leaf {
        category: (2, "CAMP", "Camping"),
        fmt: "{b} {t} {v}",
        brands: "Summit|Basecamp|Northpeak|Wildfern",
        types: "Dome Tent|Sleeping Bag|Camping Stove|Inflatable Sleeping Mat",
        variants: "Lite|Trek|Alpine|Voyager",
        price: (29, 599),
        attrs: "colour=Green|Orange|Grey|Blue; weight=Under 1 kg|1-2 kg|Over 2 kg",
        about: "is built for nights under the stars, whatever the weather",
        features: "a fully waterproof flysheet|a packable, lightweight design|a three-season rating|quick-pitch colour-coded poles|a compression stuff sack|a windproof burner",
    },
    Leaf {
        category: (2, "FITN", "Fitness"),
        fmt: "{b} {t} {v}",
        brands: "Ironform|Flexa|Corebase|Pulse",
        types: "Adjustable Dumbbell Set|Yoga Mat|Resistance Band Set|Kettlebell",
        variants: "Home|Studio|Pro|Elite",
        price: (14, 399),
        attrs: "colour=Black|Purple|Teal|Grey; level=Beginner|Intermediate|Advanced",
        about: "helps you build strength and mobility at home or in the gym",
        features: "a non-slip textured grip|durable, sweat-resistant materials|a compact design for small spaces|free guided workouts in the app|a quick-change weight dial|a carry strap",
    },
    Leaf {
        category: (3, "MSHO", "Men's Shoes"),
        fmt: "{b} {v} {t}",
        brands: "Hollis|Marlow|Ashby|Fenwick",
        types: "Leather Chelsea Boots|Suede Loafers|Canvas Sneakers|Derby Shoes",
        variants: "Classic|Heritage|Weekend|City",
        price: (39, 299),
        attrs: "size=UK 7|UK 8|UK 9|UK 10|UK 11|UK 12; colour=Black|Brown|Tan|Navy",
        about: "pairs timeless style with all-day comfort",
        features: "full-grain leather uppers|a cushioned memory foam insole|a durable Goodyear-welted sole|a water-resistant finish|a flexible rubber outsole|hand-stitched detailing",
    },
    Leaf {
        category: (3, "WSHO", "Women's Shoes"),
        fmt: "{b} {v} {t}",
        brands: "Elodie|Saffi|Wren|Juniper",
        types: "Ankle Boots|Ballet Flats|Block Heel Sandals|Leather Sneakers",
        variants: "Classic|Luna|Weekend|Soho",
        price: (29, 249),
        attrs: "size=UK 3|UK 4|UK 5|UK 6|UK 7|UK 8; colour=Black|Nude|Tan|White",
        about: "brings polished style to every step",
        features: "soft Italian leather|a padded, cushioned footbed|a non-slip rubber sole|a water-resistant finish|a comfortable 5 cm heel|a flexible, lightweight build",
    },
    Leaf {
        category: (3, "JACK", "Jackets"),
        fmt: "{b} {v} {t}",
        brands: "Northwind|Fjellmark|Harbour Co|Alder",
        types: "Waterproof Rain Jacket|Down Puffer Jacket|Denim Jacket|Softshell Jacket",
        variants: "Classic|Trail|Urban|Storm",
        price: (49, 449),
        attrs: "size=XS|S|M|L|XL; colour=Black|Navy|Olive|Red",
        about: "keeps you warm and dry when the weather turns",
        features: "a fully waterproof, breathable shell|a packable, insulated design|an adjustable hood|taped seams|zipped hand pockets|recycled fabrics",
    },
    Leaf {
        category: (3, "BAGS", "Bags"),
        fmt: "{b} {v} {t}",
        brands: "Carrowe|Tote & Co|Voyager|Latchford",
        types: "Leather Backpack|Canvas Tote Bag|Crossbody Bag|Carry-On Suitcase",
        variants: "Classic|Mini|Weekender|Metro",
        price: (29, 399),
        attrs: "colour=Black|Cognac|Navy|Olive; capacity=10 L|20 L|30 L|40 L",
        about: "carries your everyday essentials in style",
        features: "a padded 15-inch laptop sleeve|water-resistant fabric|an adjustable shoulder strap|YKK zips|an RFID-blocking pocket|360-degree spinner wheels",
    },
    Leaf {
        category: (4, "FICT", "Fiction"),
        fmt: "{t} {v}",
        brands: "Harbour House|Quillstone Press|Blue Lantern Books|Meridian",
        types: "The Silent|The Last|A Winter|The Glass|The Paper|The Salt|The Hidden|The Lost",
        variants: "Harbour|Orchard|Lighthouse|Garden|Kingdom|Summer|River|Letters",
        price: (7, 29),
        attrs: "format=Paperback|Hardcover|Ebook|Audiobook; genre=Literary|Mystery|Historical|Fantasy",
        about: "is a gripping novel of secrets, loyalty and second chances",
        features: "an unforgettable cast of characters|a twist you won't see coming|lyrical, atmospheric prose|a reading group guide|an exclusive author interview|short, page-turning chapters",
    },
    Leaf {
        category: (4, "CKBK", "Cooking"),
        fmt: "{t} {v}",
        brands: "Larder Press|Harbour House|Saltbox|Meridian",
        types: "Everyday|Simple|The Weeknight|Slow|Fresh|Homestyle|Plant-Based|Sunday",
        variants: "Kitchen|Table|Suppers|Bakes|Feasts|Bowls|Basics|Pantry",
        price: (12, 49),
        attrs: "format=Hardcover|Paperback|Ebook; cuisine=Italian|Vegetarian|Baking|Asian|Mediterranean",
        about: "is a cookbook packed with easy, reliable recipes for every day",
        features: "over 100 tested recipes|step-by-step photography|vegetarian and vegan options|30-minute weeknight meals|a guide to stocking your pantry|a chapter on baking bread",
    },
    Leaf {
        category: (4, "SCIE", "Science"),
        fmt: "{t} {v}",
        brands: "Meridian|Axiom Books|Blue Lantern Books|Penrose Press",
        types: "The Hidden|A Brief History of the|The Restless|Inside the|The Curious|The Living|Secrets of the|The Quantum",
        variants: "Universe|Genome|Ocean|Brain|Atom|Climate|Forest|Cell",
        price: (9, 39),
        attrs: "format=Hardcover|Paperback|Ebook|Audiobook; edition=First Edition|Revised Edition|Illustrated Edition",
        about: "is an accessible, award-winning popular science book about how the world works",
        features: "clear explanations of big ideas|full-colour illustrations|the latest research|a foreword by a Nobel laureate|an extensive glossary|notes for further reading",
    },
    Leaf {
        category: (4, "CHLD", "Children's Books"),
        fmt: "{t} {v}",
        brands: "Puddle Books|Acorn Press|Blue Lantern Books|Harbour House",
        types: "The Sleepy|The Brave|Little|The Hungry|The Busy|The Curious|The Tiny|The Noisy",
        variants: "Dragon|Fox|Bear|Robot|Dinosaur|Owl|Penguin|Tractor",
        price: (6, 19),
        attrs: "format=Board Book|Picture Book|Paperback|Hardcover; age=0-3 years|3-5 years|5-7 years|7-9 years",
        about: "is a joyful read-aloud children's story for little ones",
        features: "bright, full-colour illustrations|rhyming text that's fun to read aloud|sturdy pages for small hands|a gentle bedtime message|lift-the-flap surprises|a bonus sticker sheet",
    },
    Leaf {
        category: (5, "BOAR", "Board Games"),
        fmt: "{b} {v} {t}",
        brands: "Meeple Forge|Tabletop Co|Dicebox|Castlekeep",
        types: "Strategy Board Game|Family Board Game|Cooperative Adventure Game|Party Card Game",
        variants: "Starfall|Kingsroad|Saltmarsh|Emberfall",
        price: (14, 89),
        attrs: "players=1-4|2-4|2-6|3-8; age=8+|10+|12+|14+",
        about: "brings friends and family together around the table",
        features: "quick-to-learn rules|games that play in 30-60 minutes|beautifully illustrated cards|a solo mode|high replay value|premium wooden components",
    },
    Leaf {
        category: (5, "BLDG", "Building Sets"),
        fmt: "{b} {v} {t}",
        brands: "Brickly|Constructa|Blokwerk|Tinkerton",
        types: "Space Shuttle Building Set|Castle Building Set|City Fire Station Set|Robotics Building Kit",
        variants: "Starter|Classic|Deluxe|Mega",
        price: (9, 199),
        attrs: "pieces=100-249|250-499|500-999|1000+; age=4+|6+|8+|12+",
        about: "sparks creativity with hours of hands-on building",
        features: "compatibility with major brick brands|illustrated step-by-step instructions|motorised moving parts|app-controlled functions|collectible minifigures|a reusable storage box",
    },
    Leaf {
        category: (5, "PUZZ", "Puzzles"),
        fmt: "{b} {v} {t}",
        brands: "Puzzlewright|Tessellate|Jigsaw Lane|Mosaic",
        types: "Jigsaw Puzzle|Wooden Jigsaw Puzzle|3D Puzzle|Brain Teaser Set",
        variants: "Alpine Lake|Night Market|Coral Reef|World Map",
        price: (9, 59),
        attrs: "pieces=500|1000|1500|2000; finish=Matte|Glossy",
        about: "is a relaxing challenge with crisp, glare-free pieces",
        features: "precision-cut pieces that lock snugly|a full-size reference poster|recycled board and soy-based inks|a sturdy storage box|a satisfying level of challenge|a fun fact sheet about the image",
    },
];

/// splitmix64: tiny, seedable, and identical on every platform.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Modulo bias is irrelevant for demo data at these tiny ranges.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    pub(crate) fn uuid_v7(&mut self, unix_ms: u64) -> Uuid {
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes()[..2]);
        Builder::from_unix_timestamp_millis(unix_ms, &bytes).into_uuid()
    }
}

/// Deterministic Fisher-Yates permutation of `0..n`.
pub(crate) fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut items: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        items.swap(i, rng.below(i + 1));
    }
    items
}

fn words(list: &str) -> Vec<&str> {
    list.split('|').collect()
}

/// Lower-case ASCII, apostrophes dropped, every other run of symbols one dash.
fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().filter(|c| *c != '\'') {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

/// Builds the deterministic demo catalog; every call returns an identical value.
pub fn demo_catalog() -> Catalog {
    let mut rng = Rng(SEED);
    let categories = categories(&mut rng);
    let products = products(&categories, &mut rng);
    Catalog {
        categories,
        products,
    }
}

/// Roots first, then leaves in `LEAVES` order, so leaf `i` is at `ROOTS.len() + i`.
fn categories(rng: &mut Rng) -> Vec<SeedCategory> {
    let roots = ROOTS.iter().map(|(name, _)| (None, *name));
    let all = roots.chain(LEAVES.iter().map(|l| (Some(l.category.0), l.category.2)));
    let mut out: Vec<SeedCategory> = Vec::with_capacity(ROOTS.len() + LEAVES.len());
    for (i, (root, name)) in all.enumerate() {
        out.push(SeedCategory {
            id: rng.uuid_v7(CATEGORY_EPOCH_MS + i as u64 * 1_000),
            parent_id: root.map(|r| out[r].id),
            slug: slugify(name),
            name: name.to_string(),
        });
    }
    out
}

fn products(categories: &[SeedCategory], rng: &mut Rng) -> Vec<SeedProduct> {
    // Shuffled time slots spread each category across the whole year instead
    // of creating all headphones first; one product per slot keeps times distinct.
    let slots = shuffled(PRODUCT_COUNT, rng);
    let slot_ms = WINDOW_MS / PRODUCT_COUNT as u64;
    let mut out = Vec::with_capacity(PRODUCT_COUNT);
    for (li, leaf) in LEAVES.iter().enumerate() {
        let count = PRODUCT_COUNT / LEAVES.len() + usize::from(li < PRODUCT_COUNT % LEAVES.len());
        let (brands, types) = (words(leaf.brands), words(leaf.types));
        let variants = words(leaf.variants);
        let branded = leaf.fmt.contains("{b}");
        let styles = types.len() * variants.len();
        let combos = styles * if branded { brands.len() } else { 1 };
        // Drawing distinct combinations (not independent picks) makes names
        // unique by construction while still mixing brands and types.
        for (n, combo) in shuffled(combos, rng).into_iter().take(count).enumerate() {
            let ty = types[combo % types.len()];
            let variant = variants[combo / types.len() % variants.len()];
            // Book titles omit the publisher, so publishers are dealt round-robin.
            let b = if branded { combo / styles } else { n };
            let mut brand = brands[b % brands.len()];
            let mut name = leaf.fmt.replace("{b}", brand);
            name = name.replace("{t}", ty).replace("{v}", variant);
            let (root, code, _) = leaf.category;
            if code == "HEAD" && n == 0 {
                (brand, name) = ("Auralis", EXACT_MATCH_NAME.to_string());
            }
            let sku = format!("{}-{code}-{:04}", ROOTS[root].1, n + 1);
            let jitter = rng.below(slot_ms as usize) as u64;
            let unix_ms = WINDOW_START_MS + slots[out.len()] as u64 * slot_ms + jitter;
            let images = 1 + rng.below(2);
            out.push(SeedProduct {
                id: rng.uuid_v7(unix_ms),
                description: description(leaf, &name, rng),
                category_id: categories[ROOTS.len() + li].id,
                price_minor: price(leaf.price, rng),
                currency_code: "USD",
                attributes: attributes(leaf, brand, variant, rng),
                image_urls: (1..=images)
                    .map(|i| format!("{IMAGE_BASE}/{sku}-{i}.jpg"))
                    .collect(),
                created_at: DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default(),
                // -12..=250 clamped at 0: ~5% sold out, so availability
                // filters have something to hide; the rest uniform in 1..=250.
                initial_stock: (rng.below(263) as i64 - 12).max(0),
                sku,
                name,
            });
        }
    }
    out
}

fn description(leaf: &Leaf, name: &str, rng: &mut Rng) -> String {
    let features = words(leaf.features);
    let first = rng.below(features.len());
    let second = (first + 1 + rng.below(features.len() - 1)) % features.len();
    let (a, b) = (features[first], features[second]);
    let mut text = format!("{name} {}. It features {a} and {b}.", leaf.about);
    // A third sentence on two thirds of products varies description length.
    if rng.below(3) > 0 {
        text.push(' ');
        text.push_str(rng.pick(CLOSERS));
    }
    text
}

fn price((lo, hi): (i64, i64), rng: &mut Rng) -> i64 {
    // The lower of two draws skews toward cheaper items, as real assortments do.
    let span = (hi - lo + 1) as usize;
    let dollars = lo + rng.below(span).min(rng.below(span)) as i64;
    // Mostly charm pricing, with the odd round figure.
    let cents = match rng.below(20) {
        0 => 0,
        1..=5 => 49,
        _ => 99,
    };
    dollars * 100 + cents
}

fn attributes(leaf: &Leaf, brand: &str, variant: &str, rng: &mut Rng) -> Vec<(String, String)> {
    let mut attrs = vec![("brand".to_string(), brand.to_string())];
    for (key, values) in leaf.attrs.split("; ").filter_map(|a| a.split_once('=')) {
        let value = match values {
            "" => variant,
            _ => rng.pick(&words(values)),
        };
        attrs.push((key.to_string(), value.to_string()));
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all_unique<T: Eq + std::hash::Hash>(items: impl IntoIterator<Item = T>) -> bool {
        let mut seen = HashSet::new();
        items.into_iter().all(|item| seen.insert(item))
    }

    fn parts() -> (Vec<SeedCategory>, Vec<SeedProduct>) {
        let c = demo_catalog();
        (c.categories, c.products)
    }

    #[test]
    fn is_deterministic() {
        assert_eq!(demo_catalog(), demo_catalog());
    }

    #[test]
    fn counts_and_tree_shape() {
        let (cats, products) = parts();
        assert_eq!(products.len(), PRODUCT_COUNT);
        assert!(cats.len() >= 30);
        let parents: HashSet<Uuid> = cats.iter().filter_map(|k| k.parent_id).collect();
        let (leaves, roots): (Vec<_>, Vec<_>) = cats.iter().partition(|k| k.parent_id.is_some());
        assert!(roots.len() >= 6 && leaves.len() >= 24);
        for leaf in &leaves {
            let parent = cats.iter().find(|k| Some(k.id) == leaf.parent_id);
            assert!(
                parent.is_some_and(|p| p.parent_id.is_none()),
                "two levels deep"
            );
            assert!(!parents.contains(&leaf.id));
            let n = products.iter().filter(|p| p.category_id == leaf.id).count();
            assert!(n >= 30, "{} has {n} products", leaf.slug);
        }
        assert!(roots.iter().all(|r| parents.contains(&r.id)));
        assert!(
            products
                .iter()
                .all(|p| leaves.iter().any(|l| l.id == p.category_id))
        );
    }

    #[test]
    fn identifiers_are_unique() {
        let (cats, products) = parts();
        let ids = cats
            .iter()
            .map(|k| k.id)
            .chain(products.iter().map(|p| p.id));
        assert!(all_unique(ids));
        assert!(all_unique(cats.iter().map(|k| &k.slug)));
        assert!(all_unique(products.iter().map(|p| &p.sku)));
        assert!(all_unique(products.iter().map(|p| &p.name)));
        assert!(all_unique(products.iter().map(|p| p.created_at)));
    }

    #[test]
    fn ids_are_v7_and_sort_by_creation_time() {
        let (cats, products) = parts();
        assert!(cats.iter().all(|k| k.id.get_version_num() == 7));
        assert!(products.iter().all(|p| p.id.get_version_num() == 7));
        let mut by_time: Vec<&SeedProduct> = products.iter().collect();
        by_time.sort_by_key(|p| p.created_at);
        assert!(by_time.windows(2).all(|w| w[0].id < w[1].id));
        let newest_category = cats.iter().map(|k| k.id).max().expect("categories");
        assert!(by_time[0].id > newest_category);
        let start = DateTime::from_timestamp_millis(WINDOW_START_MS as i64).expect("start");
        let end = DateTime::from_timestamp_millis((WINDOW_START_MS + WINDOW_MS) as i64);
        assert!(by_time[0].created_at >= start);
        assert!(by_time[PRODUCT_COUNT - 1].created_at < end.expect("end"));
    }

    #[test]
    fn slugs_are_url_safe() {
        let slugs: Vec<String> = parts().0.into_iter().map(|k| k.slug).collect();
        for slug in &slugs {
            assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{slug}");
            let ok = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-';
            assert!(!slug.is_empty() && slug.chars().all(ok), "{slug}");
        }
        assert!(slugs.contains(&"mens-shoes".to_string()));
        assert!(slugs.contains(&"home-kitchen".to_string()));
    }

    #[test]
    fn product_fields_are_realistic() {
        let products = demo_catalog().products;
        let charm = products
            .iter()
            .filter(|p| matches!(p.price_minor % 100, 49 | 99));
        assert!(charm.count() * 10 >= PRODUCT_COUNT * 9);
        let sold_out = products.iter().filter(|p| p.initial_stock == 0).count();
        assert!((30..=90).contains(&sold_out), "{sold_out} sold out");
        for p in &products {
            assert!(p.price_minor > 0 && p.currency_code == "USD");
            assert!((0..=250).contains(&p.initial_stock));
            assert!((2..=4).contains(&p.attributes.len()) && p.attributes[0].0 == "brand");
            assert!(p.sku.starts_with("BK-") || p.name.starts_with(&p.attributes[0].1));
            let sku: Vec<usize> = p.sku.split('-').map(str::len).collect();
            assert_eq!(sku, [2, 4, 4], "{}", p.sku);
            assert!((1..=2).contains(&p.image_urls.len()));
            assert_eq!(p.image_urls[0], format!("{IMAGE_BASE}/{}-1.jpg", p.sku));
            let sentences = p.description.matches(". ").count() + 1;
            assert!((2..=3).contains(&sentences) && p.description.ends_with('.'));
        }
    }

    #[test]
    fn has_exact_match_product_in_headphones() {
        let (cats, products) = parts();
        let headphones = cats.iter().find(|k| k.slug == "headphones").expect("leaf");
        let p = products.iter().find(|p| p.name == EXACT_MATCH_NAME);
        let p = p.expect("exact-match product");
        assert_eq!(p.category_id, headphones.id);
        assert_eq!(p.attributes[0], ("brand".into(), "Auralis".into()));
        assert!(p.description.contains("wireless") && p.description.contains("bluetooth"));
    }
}
