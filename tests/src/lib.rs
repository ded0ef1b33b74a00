pub mod lightrag_sim;
