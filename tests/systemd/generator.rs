use berth_box::SystemdBox;

pub fn generator(_b: &SystemdBox) {}
